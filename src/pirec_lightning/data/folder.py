"""A dataset over a folder of images: decode, flatten onto white, center-crop, resize.

Everything here is deterministic. The dataset only decodes and resizes; every random step
(edge thresholds, color-domain k, masks, flips) happens later on the device, per sample, in the
LightningDataModule.

>>> ds = FolderImageDataset("path/to/images", image_size=64)  # doctest: +SKIP
>>> ds[0].shape, ds[0].dtype  # doctest: +SKIP
(torch.Size([3, 64, 64]), torch.float32)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pirec_lightning.data.scan import IMAGE_EXTENSIONS, CorruptImageWarning
from pirec_lightning.images import (
    DECODE_ERRORS,
    DEFAULT_MAX_PIXELS,
    ImageTooLarge,
    decode_image,
    to_rgb_on_white,
)

__all__ = [
    "DECODE_ERRORS",
    "IMAGE_EXTENSIONS",
    "CorruptImageWarning",
    "ImageTooLarge",
    "SharedCounter",
    "FolderImageDataset",
    "find_images",
    "load_image",
]

_WHITE = (255, 255, 255)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_images(root: str | Path) -> list[Path]:
    """List the images under ``root``, recursively, sorted, skipping hidden files and folders.

    Args:
        root: a folder. Files count as images when their extension (any case) is in
            `IMAGE_EXTENSIONS`; names starting with ``.`` (and anything inside such folders,
            e.g. ``.ipynb_checkpoints``) are ignored.

    Returns:
        The image paths, sorted by their path relative to ``root`` so the order is the same on
        every machine.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
        ValueError: ``root`` holds no images.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist or is not a folder: set data.root to a "
            "folder of images, or leave it unset to use the embedded emoji"
        )
    files = [
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and not _is_hidden(path, root) and path.is_file()
    ]
    if not files:
        raise ValueError(
            f"no images found in {str(root)!r} (looked recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case, hidden files skipped)"
        )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def load_image(
    path: str | Path, image_size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Decode one image file to a square float tensor.

    Steps: refuse more than ``max_pixels`` pixels before decoding, decode with Pillow (large
    JPEGs in draft mode, at the smallest DCT scale that keeps ``image_size``), apply the EXIF
    orientation, convert CMYK (and RGB with an embedded ICC profile) to sRGB through that
    profile, convert any mode to RGB with transparency composited onto white, center-crop to a
    square of the shorter side, resize to ``image_size`` with Lanczos (antialiased), scale to
    [0, 1]. No randomness.

    Args:
        path: an image file in any format Pillow decodes.
        image_size: side ``S`` of the output, in pixels (> 0).
        max_pixels: refuse larger images with :class:`ImageTooLarge` (None: no limit of ours).

    Returns:
        ``(3, S, S)`` float32 in [0, 1].

    Raises:
        DECODE_ERRORS: what Pillow raises for an undecodable or truncated file, and
            :class:`ImageTooLarge` (`FolderImageDataset` catches exactly these).
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    return square_tensor(decode_image(path, image_size, max_pixels), image_size)


def square_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """A decoded image of any mode -> ``(3, S, S)`` float32 in [0, 1]: RGB on white, center
    square, Lanczos resize to ``S = image_size`` (the steps of :func:`load_image` after decoding)."""
    image = to_rgb_on_white(image)
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32) / 255.0
    return tensor.clamp_(0.0, 1.0)


class SharedCounter:
    """A count in shared memory, so DataLoader worker processes add to the main process's."""

    def __init__(self) -> None:
        self._value = torch.zeros(1, dtype=torch.int64).share_memory_()

    def add(self, amount: int = 1) -> None:
        self._value.add_(amount)

    @property
    def value(self) -> int:
        return int(self._value.item())


class FolderImageDataset(Dataset[torch.Tensor]):
    """Images from a folder (or a list of files) as ``(3, S, S)`` float32 tensors in [0, 1].

    Each item is just the image; the LightningDataModule derives edges, color domain and masks on
    the device. A file that fails to decode does not stop training: it is reported once with a
    `CorruptImageWarning` naming it, recorded in `skipped_files`, and the next decodable image
    (wrapping around) is returned instead. If no file decodes, a RuntimeError names the folder.

    With DataLoader workers each worker holds its own copy of the dataset, so `skipped_files`
    in the main process only reflects decoding done there and each worker warns on its own;
    `failures` (shared memory) counts the failures of every worker.

    Only decoding errors (`DECODE_ERRORS`, `ImageTooLarge`) are caught: a MemoryError or a bug
    still stops training.

    Args:
        files: a folder (searched with `find_images`) or a sequence of image paths.
        image_size: side ``S`` of every returned image, in pixels.
        max_pixels: refuse images with more pixels (`load_image`).
        failures: a counter to share between datasets (e.g. the splits of one DataModule).
    """

    def __init__(
        self,
        files: Sequence[str | Path] | str | Path,
        image_size: int = 64,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        failures: SharedCounter | None = None,
    ) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        if isinstance(files, (str, os.PathLike)):
            self.root: Path | None = Path(files).expanduser()
            self.files: list[Path] = find_images(self.root)
        else:
            self.files = [Path(f) for f in files]
            if not self.files:
                raise ValueError("FolderImageDataset needs at least one image file, got none")
            self.root = None
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.failures = failures if failures is not None else SharedCounter()
        self.skipped_files: list[Path] = []
        self._bad: set[int] = set()

    @property
    def num_skipped(self) -> int:
        """How many files this process has found undecodable so far."""
        return len(self.skipped_files)

    def _describe_source(self) -> str:
        if self.root is not None:
            return str(self.root)
        try:
            return os.path.commonpath([str(f) for f in self.files])
        except ValueError:  # e.g. paths on different drives
            return f"{len(self.files)} given files"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Return image ``index`` (or the next decodable one) as ``(3, S, S)`` in [0, 1]."""
        count = len(self.files)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} images")
        last_error: BaseException | None = None
        for offset in range(count):
            i = (index + offset) % count
            if i in self._bad:
                continue
            try:
                return load_image(self.files[i], self.image_size, self.max_pixels)
            except DECODE_ERRORS as error:  # a bad file, not a bug or MemoryError: replace it
                last_error = error
                self.failures.add()
                self._bad.add(i)
                self.skipped_files.append(self.files[i])
                warnings.warn(
                    f"skipping undecodable image {str(self.files[i])!r}: "
                    f"{type(error).__name__}: {error}",
                    CorruptImageWarning,
                    stacklevel=2,
                )
        raise RuntimeError(
            f"none of the {count} images in {self._describe_source()!r} could be decoded"
            + (f" (last error: {type(last_error).__name__}: {last_error})" if last_error else "")
        )
