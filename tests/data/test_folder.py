"""Tests for pirec_lightning.data.folder: finding, decoding and robust loading of image files."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pirec_lightning.data.folder import (
    IMAGE_EXTENSIONS,
    CorruptImageWarning,
    FolderImageDataset,
    find_images,
    load_image,
)


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _solid(path: Path, color: tuple[int, int, int] = (200, 30, 60), size: int = 12) -> Path:
    return _save(Image.new("RGB", (size, size), color), path)


# --- find_images ---------------------------------------------------------------------------------


def test_find_images_extensions_any_case(tmp_path: Path) -> None:
    names = ["a.bmp", "b.WEBP", "c.jpeg", "d.JPG", "e.png", "f.Png", "g.webp"]
    for name in names:
        _solid(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    _save(Image.new("RGB", (4, 4)), tmp_path / "anim.gif")
    found = find_images(tmp_path)
    assert [p.name for p in found] == names
    for path in found:
        image = load_image(path, 8)
        assert image.shape == (3, 8, 8)


def test_find_images_nested_sorted_and_hidden_skipped(tmp_path: Path) -> None:
    _solid(tmp_path / "b.png")
    _solid(tmp_path / "a" / "deeper" / "z.png")
    _solid(tmp_path / "a" / "y.png")
    _solid(tmp_path / ".hidden.png")
    _solid(tmp_path / ".ipynb_checkpoints" / "c.png")
    _solid(tmp_path / "a" / ".cache" / "d.png")
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a/deeper/z.png",
        "a/y.png",
        "b.png",
    ]
    assert find_images(str(tmp_path)) == found


def test_find_images_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match="no_such_folder") as info:
        find_images(missing)
    assert "data.root" in str(info.value) and "emoji" in str(info.value)
    assert "\n" not in str(info.value)


def test_find_images_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty") as info:
        find_images(tmp_path / "empty")
    assert all(ext in str(info.value) for ext in IMAGE_EXTENSIONS)


# --- load_image: modes ---------------------------------------------------------------------------


def test_load_rgba_transparent_becomes_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)  # opaque red left half
    rgba[:, 4:6] = (0, 0, 0, 0)  # fully transparent black
    rgba[:, 6:] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "rgba.png")
    image = load_image(path, 8)
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    torch.testing.assert_close(
        image[:, :, :4], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 8, 4)
    )
    assert torch.equal(image[:, :, 4:6], torch.ones(3, 8, 2))
    assert torch.allclose(image[:, :, 6:], torch.full((3, 8, 2), 127 / 255), atol=2 / 255)


def test_load_la_transparent_becomes_white(tmp_path: Path) -> None:
    la = np.zeros((6, 6, 2), dtype=np.uint8)
    la[:3] = (50, 255)
    la[3:] = (0, 0)
    path = _save(Image.fromarray(la, mode="LA"), tmp_path / "la.png")
    image = load_image(path, 6)
    assert torch.allclose(image[:, :3], torch.full((3, 3, 6), 50 / 255))
    assert torch.equal(image[:, 3:], torch.ones(3, 3, 6))


def test_load_palette_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (6, 6), 0)
    palette_image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette_image.paste(1, (0, 0, 3, 6))  # left half: opaque blue
    path = _save(palette_image, tmp_path / "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    image = load_image(path, 6)
    assert torch.equal(image[:, :, :3], torch.tensor([0.0, 0, 1]).view(3, 1, 1).expand(3, 6, 3))
    assert torch.equal(image[:, :, 3:], torch.ones(3, 6, 3))  # index 0 is transparent black


def test_load_greyscale_gives_equal_channels(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))
    path = _save(Image.fromarray(grey, mode="L"), tmp_path / "grey.png")
    image = load_image(path, 8)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    torch.testing.assert_close(image[0], torch.from_numpy(grey).float() / 255)


def test_load_16bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    wide = np.full((8, 8), 32768, dtype=np.uint16)
    wide[:, :4] = 0
    path = _save(Image.fromarray(wide), tmp_path / "wide.png")
    image = load_image(path, 8)
    assert torch.allclose(image[:, :, 4:], torch.full((3, 8, 4), 0.5), atol=1 / 255)
    assert torch.equal(image[:, :, :4], torch.zeros(3, 8, 4))


def test_load_cmyk_jpeg(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), tmp_path / "cmyk.jpg")
    image = load_image(path, 8)
    assert image.shape == (3, 8, 8)
    assert image.min() > 0.9  # no ink is white


# --- load_image: geometry ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(90, 30), (30, 90)])
def test_load_center_crops_non_square(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    array = np.zeros((height, width, 3), dtype=np.uint8)
    thirds = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for k, color in enumerate(thirds):
        if width > height:
            array[:, k * width // 3 : (k + 1) * width // 3] = color
        else:
            array[k * height // 3 : (k + 1) * height // 3] = color
    path = _save(Image.fromarray(array), tmp_path / "thirds.png")
    image = load_image(path, 16)
    assert image.shape == (3, 16, 16)
    green = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).expand(3, 16, 16)
    torch.testing.assert_close(image, green, atol=1 / 255, rtol=0)


def test_load_downscale_is_antialiased_and_in_range(tmp_path: Path) -> None:
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    path = _save(Image.fromarray(checker, mode="L"), tmp_path / "checker.png")
    image = load_image(path, 8)
    assert image.min() >= 0.0 and image.max() <= 1.0
    # A nearest-neighbour resize would give pure black or white; antialiasing averages to grey.
    assert torch.allclose(image, torch.full_like(image, 0.5), atol=0.05)
    assert torch.equal(image, load_image(path, 8))  # deterministic


def test_load_upscales_small_image(tmp_path: Path) -> None:
    path = _solid(tmp_path / "small.png", color=(10, 200, 90), size=5)
    image = load_image(path, 64)
    assert image.shape == (3, 64, 64)
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_load_rejects_bad_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_image(_solid(tmp_path / "a.png"), 0)


# --- FolderImageDataset --------------------------------------------------------------------------


def test_dataset_from_folder(tmp_path: Path) -> None:
    for k in range(3):
        _solid(tmp_path / f"img{k}.png", color=(k * 100, 0, 0), size=20 + k)
    dataset = FolderImageDataset(tmp_path, image_size=16)
    assert len(dataset) == 3
    assert dataset.root == tmp_path
    for k in range(3):
        item = dataset[k]
        assert item.shape == (3, 16, 16) and item.dtype == torch.float32
        assert abs(item[0].mean().item() - k * 100 / 255) < 1 / 255
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch.shape == (3, 3, 16, 16)
    assert dataset.num_skipped == 0


def test_dataset_from_file_list_and_errors(tmp_path: Path) -> None:
    files = [_solid(tmp_path / "a.png"), str(_solid(tmp_path / "b.jpg"))]
    dataset = FolderImageDataset(files, image_size=8)
    assert len(dataset) == 2 and dataset[-1].shape == (3, 8, 8)
    with pytest.raises(IndexError):
        dataset[2]
    with pytest.raises(ValueError, match="at least one"):
        FolderImageDataset([], image_size=8)
    with pytest.raises(ValueError, match="image_size"):
        FolderImageDataset(files, image_size=-1)


def _truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def test_corrupt_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    good0 = _solid(tmp_path / "0_good.png", color=(255, 0, 0))
    garbage = tmp_path / "1_garbage.png"
    garbage.write_bytes(b"this is not a png at all" * 10)
    good2 = _solid(tmp_path / "2_good.png", color=(0, 0, 255))
    truncated = _truncated_png(tmp_path / "3_truncated.png")
    with pytest.raises((OSError, SyntaxError)):
        load_image(truncated, 8)  # the truncated file really is undecodable

    dataset = FolderImageDataset(tmp_path, image_size=8)
    assert dataset.files == [good0, garbage, good2, truncated]
    with pytest.warns(CorruptImageWarning, match="1_garbage.png"):
        assert torch.equal(dataset[1], load_image(good2, 8))  # the next image instead
    assert dataset.num_skipped == 1 and dataset.skipped_files == [garbage]
    with pytest.warns(CorruptImageWarning, match="3_truncated.png"):
        assert torch.equal(dataset[3], load_image(good0, 8))  # wraps around to the first
    assert dataset.skipped_files == [garbage, truncated]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second visit must not warn again
        assert torch.equal(dataset[1], load_image(good2, 8))
        assert torch.equal(dataset[3], load_image(good0, 8))
        assert torch.equal(dataset[0], load_image(good0, 8))
    assert dataset.num_skipped == 2


def test_corrupt_last_file_wraps_around(tmp_path: Path) -> None:
    good = _solid(tmp_path / "a.png", color=(0, 255, 0))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    dataset = FolderImageDataset(tmp_path, image_size=8)
    with pytest.warns(CorruptImageWarning, match="b.png"):
        assert torch.equal(dataset[1], load_image(good, 8))


def test_all_corrupt_raises_naming_folder(tmp_path: Path) -> None:
    folder = tmp_path / "all_bad"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"garbage")
    dataset = FolderImageDataset(folder, image_size=8)
    with pytest.warns(CorruptImageWarning), pytest.raises(RuntimeError, match="all_bad"):
        dataset[0]
    assert dataset.num_skipped == 2
