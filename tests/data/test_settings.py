"""Named extra validation sets (data.extra_val) and LPIPS in validation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pirec_lightning.config import ConfigError
from pirec_lightning.data.settings import check_extra_val
from pirec_lightning.phases.validation import lpips_metric
from pirec_lightning.training import train


def _write_npz(path: Path, n: int = 3, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    return path


def _write_folder(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_check_extra_val_one_line_errors(tmp_path: Path) -> None:
    assert check_extra_val(None) == {}
    assert check_extra_val({"a": {"image_size": 48}}) == {
        "a": {"root": None, "image_size": 48, "limit": None}
    }
    for spec, message in [
        ({"bad name": {}}, "names are letters"),
        ({"a": {"root": str(tmp_path / "missing")}}, "root does not exist"),
        ({"a": {"image_size": 30}}, "image_size must be"),
        ({"a": {"limit": 0}}, "limit must be"),
        ({"a": {"size": 32}}, "unknown keys"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_extra_val(spec)


def _metrics_csv(run_dir: Path) -> dict[str, float]:
    last: dict[str, float] = {}
    for path in sorted(run_dir.rglob("metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                last.update({k: float(v) for k, v in row.items() if v})
    return last


def test_extra_val_sets_are_logged_with_grids(make_cfg, tmp_path: Path) -> None:
    npz = _write_npz(tmp_path / "noto.npz")
    folder = _write_folder(tmp_path / "drawings")
    run_dir = tmp_path / "run"
    cfg = make_cfg(
        "phase=generating",
        "debug=tiny",
        "trainer.max_steps=2",
        f"data.extra_val={{noto:{{root:{npz}}},drawings:{{root:{folder},limit:2}},"
        "big:{image_size:48}}",
        output_dir=run_dir,
    )
    metrics, _ = train(cfg)
    logged = _metrics_csv(run_dir)
    for prefix in ("val", "val_noto", "val_drawings", "val_big"):
        for key in ("psnr", "ssim", "l1", "psnr_baseline"):
            assert f"{prefix}/{key}" in logged, (prefix, key, sorted(logged))
            assert f"{prefix}/{key}" in metrics
    assert logged["val_noto/psnr"] != logged["val/psnr"]
    grids = {p.name.split("_step")[0] for p in run_dir.rglob("samples/*.png")}
    assert {
        "generating_samples",
        "generating_samples_noto",
        "generating_samples_drawings",
        "generating_samples_big",
    } <= grids
    with pytest.raises(ConfigError, match="data.extra_val.x.root does not exist"):
        train(make_cfg("debug=tiny", f"data.extra_val={{x:{{root:{tmp_path / 'nope'}}}}}"))


def test_lpips_skips_cleanly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIREC_OFFLINE", "1")
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    metric, reason = lpips_metric()
    assert metric is None
    assert reason.startswith("LPIPS skipped") and len(reason.splitlines()) == 1


def test_lpips_is_logged_when_its_weights_are_there(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AlexNet weights file (random values) given the way ``pirec evaluate --lpips-weights``
    takes it stands in for the real download; validation then logs real LPIPS values."""
    import torchvision

    from pirec_lightning.models import metrics
    from pirec_lightning.phases import validation

    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet().state_dict(), weights)
    find = metrics.optional_metrics
    monkeypatch.setattr(validation, "optional_metrics", lambda: find(lpips_weights=weights))
    cfg = make_cfg(
        "phase=imitation", "debug=tiny", "trainer.max_steps=2", output_dir=tmp_path / "r"
    )
    metrics, objects = train(cfg)
    assert objects["model"].hparams.lpips_status == "alex"
    assert metrics["val/lpips"] >= 0 and metrics["val/lpips_baseline"] >= 0
    assert metrics["val/lpips"] != metrics["val/lpips_baseline"]
