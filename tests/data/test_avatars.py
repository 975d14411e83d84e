"""data=avatars: DiceBear avatars rendered from SVG with their line art, cached on disk."""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import ndimage
from skimage.color import rgb2gray
from skimage.segmentation import find_boundaries
from torch.utils.data import DataLoader

from pirec_lightning.data import avatars, avatars_lineart, lineart, svg_pairs
from pirec_lightning.data.avatars import (
    ALLOWED_LICENSES,
    HELDOUT_STYLES,
    LINE_ART_STYLES,
    PICTURE_STYLES,
    AvatarDataset,
    attribution_markdown,
    avatar_items,
    avatar_styles,
    avatar_svg,
    check_avatar_settings,
    render_avatar,
)
from pirec_lightning.errors import DataError, one_line

pytest.importorskip("dicebear")
pytest.importorskip("resvg_py")

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


def _picture(path: Path) -> np.ndarray:
    """(H, W, 3) float in [0, 1] on white, straight from the cached RGBA PNG."""
    from PIL import Image

    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255.0
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def _line_art(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 127


def _thickness(mask: np.ndarray) -> float:
    """Largest distance from a mask pixel to the nearest non-mask pixel (scipy's exact EDT)."""
    return float(ndimage.distance_transform_edt(np.pad(mask, 1)).max())


def test_licences_are_read_from_the_style_files() -> None:
    styles = avatar_styles()
    assert [s.name for s in styles] == [*LINE_ART_STYLES, *PICTURE_STYLES]
    for style in styles:
        meta = json.loads(files("dicebear_styles").joinpath(f"{style.name}.json").read_text())[
            "meta"
        ]
        assert style.license == meta["license"]["name"] in ALLOWED_LICENSES
        assert style.license_url == meta["license"]["url"]
        assert (style.creator, style.creator_url) == (
            meta["creator"]["name"],
            meta["creator"]["url"],
        )
        assert style.has_line_art == (style.name in LINE_ART_STYLES)
    table = attribution_markdown()
    assert "Lisa Wischofsky" in table and "CC0 1.0" in table and table.count("\n") == 18
    with pytest.raises(DataError, match="avataaars.*not CC0 1.0 or CC BY 4.0"):
        avatar_styles(["avataaars"])  # "Free for personal and commercial use"
    with pytest.raises(DataError, match="unknown DiceBear style 'nope'.*adventurer"):
        avatar_styles(["nope"])


def test_splits_by_seed_and_by_style() -> None:
    parts = {s: avatar_items(s, count=2000) for s in ("train", "val", "test")}
    everything = avatar_items("all", count=2000)
    assert len(everything) == len(set(everything)) == 2000
    assert sorted(sum(parts.values(), [])) == sorted(everything)
    sets = {name: set(items) for name, items in parts.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    held = {"lorelei", "lorelei-neutral", "personas"}  # a held-out style takes its -neutral
    train_styles = {style for style, _ in parts["train"]}
    assert not train_styles & held
    assert train_styles == set(LINE_ART_STYLES + PICTURE_STYLES) - held
    for name in ("val", "test"):
        styles = {style for style, _ in parts[name]}
        assert held <= styles and train_styles <= styles  # unseen styles and unseen seeds
    # a held-out style has about as many val items as any other style
    counts = {s: sum(style == s for style, _ in parts["val"]) for s in ("lorelei", "micah")}
    assert counts["lorelei"] > counts["micah"] / 3
    # deterministic, and a pair's split does not depend on the other styles listed
    assert avatar_items("val", count=2000) == parts["val"]
    few = avatar_items("val", ["micah", "personas"], ["personas"], count=500)
    micah_val = {seed for style, seed in few if style == "micah"}
    micah_train = {seed for style, seed in avatar_items("train", count=2000) if style == "micah"}
    assert micah_val and not micah_val & micah_train
    assert avatar_items("val", count=2000, split_seed=1) != parts["val"]


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(DataError, match="every style"):
        avatar_items("train", ["lorelei", "lorelei-neutral"], ["lorelei"], count=10)
    with pytest.raises(DataError, match="train, val, test, all"):
        avatar_items("validation")
    with pytest.raises(DataError, match="count must be a positive integer"):
        check_avatar_settings({"count": 0})
    with pytest.raises(DataError, match=r"heldout_styles \['bottts'\]"):
        check_avatar_settings({"heldout_styles": ["bottts"]})
    with pytest.raises(DataError, match="unknown data.avatars keys"):
        check_avatar_settings({"size": 3})
    with pytest.raises(DataError, match="empty"):
        AvatarDataset("test", count=50, fractions=(0.9, 0.1, 0.0))
    check_avatar_settings(OmegaConf.to_container(OmegaConf.load(CONF / "avatars.yaml").avatars))


def test_config_mirrors_the_emoji_one() -> None:
    config = OmegaConf.load(CONF / "avatars.yaml")
    emoji = OmegaConf.load(CONF / "emoji.yaml")
    assert list(config.defaults) == list(emoji.defaults) and config.root is None
    assert config.image_size == 128
    assert config.avatars.count == 20000 and config.avatars.styles is None
    assert list(config.avatars.heldout_styles) == list(HELDOUT_STYLES)


def test_rendering_is_lazy_cached_once_and_atomic(tmp_path, monkeypatch) -> None:
    dataset = AvatarDataset("val", image_size=64, count=60, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing rendered before an item is asked for
    first = dataset[0]
    pngs = sorted(tmp_path.rglob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    stamps = {p: p.stat().st_mtime_ns for p in pngs}

    def refuse(*args, **kwargs):
        raise AssertionError("rendered again")

    with monkeypatch.context() as patch:
        patch.setattr(lineart, "render_png", refuse)
        patch.setattr(lineart, "line_art", refuse)
        again = AvatarDataset("val", image_size=64, count=60, cache_dir=tmp_path)[0]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert {p: p.stat().st_mtime_ns for p in pngs} == stamps

    # a run killed between the line art and the picture: no picture, nothing half-written
    style, seed = next(item for item in dataset.items[1:] if item[0] in LINE_ART_STYLES)
    written, write = [], avatars._write_atomic

    def killed_after_one_file(path, data):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        write(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(avatars, "_write_atomic", killed_after_one_file)
        with pytest.raises(KeyboardInterrupt):
            render_avatar(style, seed, 64, tmp_path)
    assert written and written[0].name == f"{seed}.line.png"
    assert not written[0].with_name(f"{seed}.png").exists()
    # killed before the rename: the target is absent, the temporary file removed
    with monkeypatch.context() as patch:
        patch.setattr(svg_pairs.os, "replace", killed_after_one_file)
        with pytest.raises(KeyboardInterrupt):
            render_avatar(style, seed, 64, tmp_path)
    assert not written[0].with_name(f"{seed}.png").exists()
    assert not list(tmp_path.rglob("*.part"))
    picture, line = render_avatar(style, seed, 64, tmp_path)  # the next access completes it
    assert picture.is_file() and line is not None and line.is_file()
    assert not list(tmp_path.rglob("*.part"))


def test_same_style_and_seed_same_pixels_in_a_fresh_cache(tmp_path) -> None:
    a = AvatarDataset("all", image_size=64, count=40, cache_dir=tmp_path / "a")
    b = AvatarDataset("all", image_size=64, count=40, cache_dir=tmp_path / "b")
    index = next(i for i, (style, _) in enumerate(a.items) if style == "micah")
    one, two = a[index], b[index]
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert one["line_art"].sum() > 0 and bool(one["has_line_art"])
    assert avatar_svg("micah", 3) == avatar_svg("micah", 3) != avatar_svg("micah", 4)
    other = a[next(i for i, (s, seed) in enumerate(a.items) if s == "micah" and i != index)]
    assert not torch.equal(one["image"], other["image"])


def test_items_collate_across_line_art_and_picture_styles(tmp_path) -> None:
    dataset = AvatarDataset(
        "all",
        image_size=64,
        count=4,
        styles=["croodles", "dylan"],
        heldout_styles=[],
        cache_dir=tmp_path,
    )
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert float(batch["image"].min()) >= 0.0 and float(batch["image"].max()) <= 1.0
    assert batch["line_art"].shape == (4, 1, 64, 64)
    assert set(batch["line_art"].unique().tolist()) <= {0.0, 1.0}
    styles = [style for style, _ in dataset.items]
    assert batch["has_line_art"].tolist() == [s == "croodles" for s in styles]
    assert batch["line_art"][~batch["has_line_art"]].sum() == 0
    images = AvatarDataset(
        "all",
        image_size=64,
        count=4,
        styles=["croodles", "dylan"],
        heldout_styles=[],
        cache_dir=tmp_path,
        with_line_art=False,
    )
    assert torch.equal(images[0], batch["image"][0])


@pytest.mark.parametrize("style", ["adventurer", "micah", "open-peeps", "lorelei", "notionists"])
def test_line_art_draws_the_dark_outlines_without_filled_areas(tmp_path, style) -> None:
    for seed in (0, 1):
        picture_path, line_path = render_avatar(style, seed, 128, tmp_path)
        picture, ink = _picture(picture_path), _line_art(line_path)
        # the reference, from the picture alone: dark pixels on the boundary of dark regions
        dark = rgb2gray(picture) < 0.35
        outline = find_boundaries(dark, mode="inner") & dark
        near_ink = ndimage.binary_dilation(ink, np.ones((3, 3), bool))
        recall = (outline & near_ink).sum() / outline.sum()
        assert recall >= 0.85, f"{style} {seed}: {recall:.2f} of the dark outline drawn"
        near_dark = ndimage.binary_dilation(dark, np.ones((3, 3), bool))
        # ink where the picture is dark (micah's coloured strokes, e.g. earrings, are not)
        assert (ink & near_dark).sum() / ink.sum() >= 0.75
        assert 0.01 <= ink.mean() <= 0.2
        assert _thickness(ink) <= 2.5, f"{style} {seed}: a filled area in the line art"


def test_filled_dark_areas_become_outlines(tmp_path) -> None:
    # open-peeps draws black hair as one filled shape: thick in the picture, an outline here
    thick = []
    for seed in range(6):
        picture_path, line_path = render_avatar("open-peeps", seed, 128, tmp_path)
        dark = rgb2gray(_picture(picture_path)) < 0.35
        thick.append(_thickness(dark))
        assert _thickness(_line_art(line_path)) <= 2.5
    assert max(thick) >= 6


def test_coloured_strokes_are_lines(tmp_path) -> None:
    # croodles draws hair with coloured strokes: structure, not colour, makes them ink
    coloured = 0.0
    for seed in range(4):
        picture_path, line_path = render_avatar("croodles", seed, 128, tmp_path)
        ink, light = _line_art(line_path), rgb2gray(_picture(picture_path)) > 0.35
        coloured = max(coloured, (ink & light).sum() / ink.sum())
    assert coloured > 0.2


def test_picture_styles_have_no_line_art(tmp_path) -> None:
    picture, line = render_avatar("big-smile", 0, 64, tmp_path)
    assert line is None and picture.is_file()


def test_figures_match_an_independent_reference(tmp_path) -> None:
    picture_path, line_path = render_avatar("adventurer", 2, 128, tmp_path)
    picture = np.round(_picture(picture_path) * 255).astype(np.uint8)
    ink = _line_art(line_path)
    figures = avatars_lineart.line_art_figures(picture, ink)
    assert figures["thickness"] == pytest.approx(_thickness(ink), abs=0.05)
    assert figures["share"] == pytest.approx(ink.mean())
    assert figures["recall"] >= 0.85 and figures["edge_recall"] >= 0.9 and figures["blob"] == 0


def test_256_px(tmp_path) -> None:
    dataset = AvatarDataset(
        "all",
        image_size=256,
        count=2,
        styles=["adventurer", "toon-head"],
        heldout_styles=[],
        cache_dir=tmp_path,
    )
    item = dataset[0]
    assert item["image"].shape == (3, 256, 256) and item["line_art"].shape == (1, 256, 256)
    ink = item["line_art"][0].numpy() > 0
    assert 0.01 <= ink.mean() <= 0.2 and _thickness(ink) <= 3.5
    assert dataset[1]["image"].shape == (3, 256, 256) and not dataset[1]["has_line_art"]


@pytest.mark.parametrize("module", ["dicebear", "dicebear_styles"])
def test_missing_dicebear_says_what_to_install(monkeypatch, module) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    monkeypatch.setattr(avatars, "_definition", avatars._definition.__wrapped__)
    with pytest.raises(DataError) as error:
        AvatarDataset("train", count=10)
    message = str(error.value)
    assert message == one_line(error.value)
    assert "pip install dicebear-core dicebear-styles" in message and module in message
