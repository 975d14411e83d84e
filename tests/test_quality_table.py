"""benchmarks/quality.py's table: the perceptual columns where measured, one line where not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(stage_values: dict, skipped: dict | None = None) -> dict:
    return {
        "model": "m",
        "set": "emoji test split",
        "edges": "canny",
        "images": 4,
        "image_size": 64,
        "stages": {"color_domain": stage_values, "first_stage": stage_values},
        "skipped": skipped or {},
    }


def test_perceptual_columns_follow_the_measured_metrics() -> None:
    quality = _quality()
    measured = _row({"psnr": 20.0, "ssim": 0.8, "lpips": 0.1234, "dists": 0.2})
    text = quality.table([measured])
    assert quality.metric_columns([measured]) == ["lpips", "dists"]
    assert "| 20.00 / 0.800 / 0.123 / 0.200 |" in text
    assert "PSNR dB / SSIM / LPIPS / DISTS" in text and "LPIPS and DISTS lower is better" in text


def test_absent_weights_are_one_line_under_the_table() -> None:
    quality = _quality()
    line = "LPIPS skipped: AlexNet weights not found; run `pirec weights fetch`"
    row = _row({"psnr": 20.0, "ssim": 0.8}, {"lpips": line, "fid": "FID skipped: ..."})
    text = quality.table([row])
    assert quality.metric_columns([row]) == []
    assert "| 20.00 / 0.800 |" in text and text.rstrip().endswith(line)
    assert "FID" not in text
