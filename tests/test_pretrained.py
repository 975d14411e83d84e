"""Bundled models: safetensors written from a real checkpoint, read back by every entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from pirec_lightning import pretrained
from pirec_lightning.cli import main
from pirec_lightning.config import compose_config
from pirec_lightning.errors import CheckpointError, ConfigError
from pirec_lightning.inference import Reconstructor
from pirec_lightning.training import train


@pytest.fixture
def bundled(tiny_run, tmp_path, monkeypatch) -> Path:
    """The tiny refinement checkpoint written as bundled model ``tiny-32`` in a folder of its
    own, which stands in for the package's ``pretrained/``."""
    monkeypatch.setattr(pretrained, "MODELS_DIR", tmp_path)
    written = pretrained.write_pretrained(tiny_run["refinement"], tmp_path / "tiny-32.safetensors")
    (tmp_path / "tiny-32.json").write_text(json.dumps({"name": "tiny-32"}))
    assert written["bytes"] > 0 and written["tensors"] > 0
    return tmp_path / "tiny-32.safetensors"


def test_written_file_is_fp16_safetensors_with_its_settings(bundled):
    with safe_open(str(bundled), framework="pt") as handle:
        keys = list(handle.keys())
        assert {handle.get_tensor(k).dtype for k in keys} == {torch.float16}
        metadata = handle.metadata()
    assert any(k.startswith("preliminary_generator.") for k in keys)
    assert any(k.startswith("discriminator.") for k in keys)
    assert json.loads(metadata["pirec_phase"]) == "refinement"
    assert pretrained.list_models() == ["tiny-32"]
    assert pretrained.model_card("tiny-32") == {"name": "tiny-32"}


def test_pretrained_reconstructs_as_its_checkpoint(bundled, tiny_run):
    reference = Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu")
    model = Reconstructor.pretrained("tiny-32", device="cpu")
    assert model.stages == 2 and model.image_size == reference.image_size
    g = torch.Generator().manual_seed(0)
    edge = (torch.rand(2, 1, 32, 32, generator=g) > 0.8).float()
    color = torch.rand(2, 3, 32, 32, generator=g)
    # the only difference is the fp16 rounding of the weights
    torch.testing.assert_close(
        model.reconstruct(edge, color), reference.reconstruct(edge, color), atol=2e-2, rtol=0
    )


def test_unknown_name_lists_the_bundled_ones(bundled):
    with pytest.raises(CheckpointError, match=r"unknown pretrained model 'nope'; bundled: tiny-32"):
        Reconstructor.pretrained("nope")
    with pytest.raises(ConfigError, match="unknown pretrained model"):
        from pirec_lightning.config import validate_config

        validate_config(compose_config(["debug=tiny", "init_from=pretrained:nope"]))


def test_not_our_file_is_one_line(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a pirec-lightning model"):
        pretrained.read_pretrained(path=tmp_path / "other.safetensors")


def test_cli_reconstructs_with_model(bundled, tmp_path, capsys):
    edge = tmp_path / "e.png"
    color = tmp_path / "c.png"
    from PIL import Image

    Image.new("L", (32, 32)).save(edge)
    Image.new("RGB", (32, 32), (200, 100, 50)).save(color)
    out = tmp_path / "out.png"
    code = main(
        ["reconstruct", "--model", "tiny-32", "--edge", str(edge), "--color", str(color)]
        + ["-o", str(out), "--device", "cpu"]
    )
    assert code == 0 and out.is_file()
    assert (
        main(
            [
                "reconstruct",
                "--model",
                "nope",
                "--edge",
                str(edge),
                "--color",
                str(color),
                "-o",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert "bundled: tiny-32" in capsys.readouterr().err


def test_init_from_pretrained_fine_tunes(bundled, tmp_path):
    cfg = compose_config(
        [
            "phase=generating",
            "debug=tiny",
            "model.generator.res_blocks=1",
            "init_from=pretrained:tiny-32",
            "trainer.max_steps=1",
            "~logger",
            "~callbacks.lr_monitor",
        ],
        output_dir=tmp_path / "ft",
    )
    metrics, objects = train(cfg)
    assert objects["last_ckpt"] is not None and "train/g_loss" in metrics
    # the hand-over itself: the bundled first stage becomes the generating generator
    from pirec_lightning.phases.handover import init_from_checkpoint, read_init_from
    from pirec_lightning.training import build_phase

    module = build_phase(cfg)
    init_from_checkpoint(module, read_init_from("pretrained:tiny-32"))
    reference = pretrained.read_pretrained("tiny-32")["state_dict"]
    for key, value in module.generator.state_dict().items():
        torch.testing.assert_close(value, reference[f"preliminary_generator.{key}"])
