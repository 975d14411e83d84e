"""Messy image folders: every bad-file case, made here, scanned once, skipped and counted."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.data.folder import FolderImageDataset, load_image
from pirec_lightning.data.scan import CorruptImageWarning, scan_images, usable_images
from pirec_lightning.errors import DataError
from pirec_lightning.images import ImageTooLarge, decode_image


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("PIREC_CACHE_DIR", str(tmp_path / "cache"))


def _noise(height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _jpeg_bytes(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _rgb_icc_profile(red, green, blue, gamma: float = 2.2) -> bytes:
    """A minimal matrix/TRC RGB ICC v2 display profile with the given D50 colorants."""

    def xyz(color) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in color)

    white = (0.9642, 1.0, 0.8249)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"rXYZ", xyz(red)), (b"gXYZ", xyz(green)), (b"bXYZ", xyz(blue))]
    tags += [(b"wtpt", xyz(white)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    header = struct.pack(
        ">I4sI4s4s4s", offset + len(data), b"", 0x02100000, b"mntr", b"RGB ", b"XYZ "
    )
    header += b"\0" * 12 + b"acsp" + b"\0" * 28 + b"".join(_s15(v) for v in white)
    return header + b"\0" * (128 - len(header)) + table + data


def _bomb_png(path: Path, side: int) -> Path:
    """A tiny file whose header claims ``side`` x ``side`` pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    data += _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def _messy_folder(root: Path) -> dict[str, Path]:
    """One file of every kind; returns the good ones by name."""
    root.mkdir(parents=True, exist_ok=True)
    good = {}
    good["unicode"] = root / "café photo 1 – ✓.jpg"
    good["unicode"].write_bytes(_jpeg_bytes(_noise(seed=1)))
    good["small"] = root / "tiny.png"
    Image.fromarray(_noise(8, 8, seed=2)).save(good["small"])
    good["grey"] = root / "nested" / "grey.PNG"
    good["grey"].parent.mkdir()
    Image.fromarray(_noise(seed=3)[..., 0]).save(good["grey"])
    good["palette"] = root / "palette.png"
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (0, 0, 10, 20))
    palette.save(good["palette"], transparency=0)
    good["wide"] = root / "wide16.png"
    cv2.imwrite(str(good["wide"]), np.full((20, 20, 3), 32896, np.uint16))  # 16-bit RGB
    data = _jpeg_bytes(_noise(seed=4))
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "zero.png").write_bytes(b"")
    (root / "notes.jpeg").write_text("not an image at all")
    _bomb_png(root / "bomb.png", 4000)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.webp").symlink_to(root / "missing.webp")
    return good


def test_messy_folder_is_scanned_skipped_and_counted(tmp_path):
    root = tmp_path / "photos"
    good = _messy_folder(root)
    report = scan_images(root, max_pixels=1_000_000, min_side=16)
    assert sorted(report.usable) == sorted(good.values())
    reasons = {path.name: why for path, why in report.skipped}
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty" in reasons["zero.png"]
    assert "not an image" in reasons["notes.jpeg"]
    assert "data.max_pixels" in reasons["bomb.png"]  # refused from the header: no decoding
    assert "symlink loop" in reasons["loop"]
    assert "dangling.webp" in reasons
    assert report.found == len(good) + 5 and report.small == 1
    with pytest.warns(CorruptImageWarning, match="skipping 6 of 10 files") as caught:
        usable_images(report)
    assert len(caught) == 1  # one summary warning, naming a few
    # every usable file really decodes, whatever its mode
    for path in report.usable:
        image = load_image(path, 16)
        assert image.shape == (3, 16, 16) and image.min() >= 0 and image.max() <= 1


def test_scan_is_cached_by_path_size_and_mtime(tmp_path):
    root = tmp_path / "photos"
    _messy_folder(root)
    first = scan_images(root, max_pixels=1_000_000)
    assert first.from_cache == 0
    second = scan_images(root, max_pixels=1_000_000)
    readable = first.found - 1  # the dangling link cannot be stat'ed, so it is never cached
    assert second.from_cache == readable and second.usable == first.usable
    # a changed file is read again, the others come from the cache
    changed = root / "tiny.png"
    changed.write_bytes(b"garbage")
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = scan_images(root, max_pixels=1_000_000)
    assert third.from_cache == readable - 1
    assert changed in {path for path, _ in third.skipped}
    # the pixel limit is applied to cached sizes, so changing it needs no rescan
    assert len(scan_images(root, max_pixels=None).usable) == len(third.usable) + 1


def test_empty_and_all_bad_folders_fail_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images in data.root") as info:
        usable_images(scan_images(empty))
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.jpg", "b.png", "c.webp"):
        (bad / name).write_bytes(b"broken")
    with pytest.raises(DataError, match="none of the 3 image files") as info:
        usable_images(scan_images(bad))
    assert "a.jpg" in str(info.value)


def test_datamodule_says_what_it_found(tmp_path, caplog):
    root = tmp_path / "three"
    root.mkdir()
    for k in range(3):
        Image.fromarray(_noise(seed=k)).save(root / f"{k}.png")
    (root / "broken.png").write_bytes(b"broken")
    dm = PIRECDataModule(root=root, image_size=32, num_workers=0, split=(1.0, 0.0, 0.0))
    with pytest.warns(CorruptImageWarning), pytest.raises(DataError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "val split" in message and "4 image files found, 3 decodable" in message
    assert "data.split" in message

    dm = PIRECDataModule(root=root, image_size=32, num_workers=0, split=(0.5, 0.5, 0.0))
    with caplog.at_level("INFO"), pytest.warns(CorruptImageWarning):
        dm.setup("fit")
    assert dm.summary["images_found"] == 4 and dm.summary["images_skipped"] == 1
    assert dm.summary["images_train"] + dm.summary["images_val"] == 3
    assert "4 images found" in caplog.text


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)  # red left half of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    upright = decode_image(path, 20)  # no draft scaling at this size
    assert upright.size == (20, 40)  # portrait after the rotation
    top = np.asarray(upright)[:10].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 60  # the red half is now on top


def test_cmyk_and_icc_tagged_images_are_converted_to_srgb(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk)  # magenta + yellow ink = red
    red = load_image(cmyk, 8)
    assert red[0].min() > 0.9 and red[1].max() < 0.2 and red[2].max() < 0.2
    # an RGB image tagged with a non-sRGB profile (sRGB's red and blue primaries swapped)
    # goes through it: LittleCMS as reference, and red and blue come out swapped
    srgb_d50 = [(0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)]
    icc = _rgb_icc_profile(srgb_d50[2], srgb_d50[1], srgb_d50[0])
    array = np.full((16, 16, 3), (200, 60, 120), np.uint8)
    tagged = tmp_path / "tagged.png"
    Image.fromarray(array).save(tagged, icc_profile=icc)
    expected = ImageCms.profileToProfile(
        Image.fromarray(array),
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    )
    got = load_image(tagged, 16)
    want = torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(got, want, atol=1 / 255, rtol=0)
    torch.testing.assert_close(got[:, 0, 0], torch.tensor([120, 60, 200]) / 255, atol=0.03, rtol=0)
    # a broken embedded profile falls back to the plain conversion instead of failing
    broken = tmp_path / "broken_icc.jpg"
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(broken, icc_profile=b"not a profile")
    assert load_image(broken, 8).min() > 0.9


def test_pixel_limit_refuses_before_decoding(tmp_path):
    bomb = _bomb_png(tmp_path / "bomb.png", 4000)  # 16 MP claimed, 100 bytes on disk
    with pytest.raises(ImageTooLarge, match="data.max_pixels=10,000,000"):
        load_image(bomb, 32, max_pixels=10_000_000)
    huge = _bomb_png(tmp_path / "huge.png", 20000)  # over Pillow's own limit too
    with pytest.raises(ImageTooLarge, match="decompression-bomb"):
        load_image(huge, 32, max_pixels=None)


def test_large_jpeg_decodes_in_draft_mode(tmp_path):
    big = np.kron(_noise(24, 32, seed=5), np.ones((64, 64, 1), np.uint8))  # 1536 x 2048
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg_bytes(big, quality=95))
    drafted = decode_image(path, 64)
    assert min(drafted.size) >= 64 and drafted.size[0] <= 2048 // 8  # DCT-scaled by 1/8
    full = torch.from_numpy(cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA))
    ours = load_image(path, 64)
    crop = full.permute(2, 0, 1).float() / 255
    # same picture as a full decode (center crop of a 4:3 image: compare the middle columns)
    middle = cv2.resize(big[:, 256:1792], (64, 64), interpolation=cv2.INTER_AREA)
    middle = torch.from_numpy(middle).permute(2, 0, 1).float() / 255
    assert (ours - middle).abs().mean() < 0.03
    assert crop.shape == ours.shape


def test_only_decoding_errors_are_replaced(tmp_path, monkeypatch):
    good = tmp_path / "a.png"
    Image.fromarray(_noise()).save(good)
    dataset = FolderImageDataset([good, good], image_size=16)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("pirec_lightning.data.folder.decode_image", out_of_memory)
    with pytest.raises(MemoryError):
        dataset[0]
    assert dataset.failures.value == 0


def test_file_going_bad_mid_epoch_is_replaced_and_counted_across_workers(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    files = []
    for k in range(4):
        files.append(root / f"{k}.png")
        Image.fromarray(_noise(seed=k)).save(files[-1])
    dm = PIRECDataModule(root=root, image_size=16, batch_size=2, num_workers=2, split=(1, 0, 0))
    dm._files = {"train": files, "val": files, "test": []}  # past the scan
    files[1].write_bytes(b"went bad after the scan")
    loader = dm._loader("train", shuffle=False)
    images = torch.cat([batch["image"] for batch in loader])
    assert images.shape == (4, 3, 16, 16)
    assert torch.equal(images[1], images[2])  # the next image stood in for the broken one
    assert dm.decode_failures.value >= 1  # counted in the worker, seen here
