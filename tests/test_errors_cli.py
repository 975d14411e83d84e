"""The command line in front of Hydra: its flags pass through `pirec train`, and every mistake
ends as one line naming the key or file and the fix (exit code 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pirec_lightning.config import prepare_overrides, validate_config
from pirec_lightning.errors import ConfigError, DataError
from pirec_lightning.training import train

ROOT = Path(__file__).resolve().parents[1]


def pirec(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIREC_OFFLINE": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pirec_lightning.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert message.startswith("error: ")
    for text in expected:
        assert text in message, message


def test_hydra_flags_pass_through_pirec_train(capsys, monkeypatch):
    from pirec_lightning.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `pirec train` hands sys.argv to Hydra
    assert main(["train", "--cfg", "job", "debug=tiny"]) == 0
    assert "image_size: 32" in capsys.readouterr().out  # the composed config, debug=tiny applied


def test_unquoted_home_path_reaches_the_data_check(tmp_path):
    """The README's `data.root=~/photos` parses; the empty folder is then one line."""
    (tmp_path / "photos").mkdir()
    result = pirec("train", "data=folder", "data.root=~/photos", env={"HOME": str(tmp_path)})
    assert_one_line_error(result, "no images in data.root", str(tmp_path / "photos"))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.imagesize=64"], "unknown config key data.imagesize: did you mean data.image_size"),
        (
            ["data=nope"],
            "Could not find 'data/nope' Available options in 'data': avatars emoji folder",
        ),
        (["model.generator.resblocks=2"], "did you mean model.generator.res_blocks"),
    ],
)
def test_hydra_errors_become_one_line(overrides, expected):
    with pytest.raises(ConfigError) as info:
        prepare_overrides(overrides)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_paths_hydra_cannot_lex_are_quoted():
    sweep = ["-m", "data.root=/x/é", "model.optimizer.lr=1e-4,2e-4"]
    assert prepare_overrides(sweep) == ["-m", 'data.root="/x/é"', sweep[2]]  # sweeps stay
    prepared = prepare_overrides(["data=folder", "data.root=~/mes photos/é", "debug=tiny"])
    assert prepared[1] == f'data.root="{Path.home()}/mes photos/é"'
    assert prepare_overrides(["hydra.run.dir=~/runs"]) == [f'hydra.run.dir="{Path.home()}/runs"']
    assert prepare_overrides(["data.root=/plain/path"]) == ["data.root=/plain/path"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["+data.imagesize=64"], "unknown config key data.imagesize: did you mean data.image_size"),
        (["+trainer.max_step=3"], "did you mean trainer.max_steps"),
        (["data.image_size=16"], "data.image_size must be an integer >= 32"),
        (["data.max_pixels=0"], "data.max_pixels"),
        (["data.confusion.k=[0,3]"], "k must be >= 1"),
        (["data.confusion.val_canny_sigma=0"], "sigmas must be > 0"),
        (["data.confusion.val_median_kernel=4"], "odd"),
        (["data.confusion.edge_dropout=1.5"], "edge_dropout must be in [0, 1]"),
        (["max_bad_steps=0"], "max_bad_steps"),
        (
            ["data.augment.horizontal_flip.p=1.5"],
            "data.augment.horizontal_flip.p must be in [0, 1]",
        ),
    ],
)
def test_config_validation_names_the_key(make_cfg, overrides, key):
    with pytest.raises(ConfigError) as info:
        validate_config(make_cfg("debug=tiny", *overrides))
    assert key in str(info.value)


def test_gpu_trainer_without_a_gpu_suggests_cpu(make_cfg):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="trainer=cpu"):
        validate_config(make_cfg("trainer=gpu"))


def test_folder_problems_stop_before_training(make_cfg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images in data.root"):
        train(make_cfg("debug=tiny", "data=folder", f"data.root={empty}"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for k in range(3):
        (broken / f"{k}.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match="none of the 3 image files"):
        train(make_cfg("debug=tiny", "data=folder", f"data.root={broken}"))
    assert not list(tmp_path.rglob("*.ckpt"))
