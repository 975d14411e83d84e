"""Decoded images kept in memory, so the data path never waits on decoding (``data.cache``).

``none``
    every batch is decoded from the files by the DataLoader (workers, pinned memory optional).
``ram``
    each split is decoded once (on the DataLoader's workers) into one ``uint8`` tensor in host
    memory; batches are slices of it. A 128 px image costs 48 KiB: the 4,009 emoji take 197 MB.
``device``
    as ``ram``, and the tensor is moved once to the batch's device; the loader then yields only
    indices and the images are gathered on the device in ``on_after_batch_transfer``.

All three give the same batches: ``load_image`` returns ``uint8 / 255`` in float32, which is
what the cache stores and divides back, and the loader's sampler does not depend on the mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

CACHE_MODES = ("none", "ram", "device")


def check_cache_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`CACHE_MODES`, else raise one clear ValueError."""
    if mode not in CACHE_MODES:
        raise ValueError(
            f"data.cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}: e.g. data.cache=ram"
        )
    return mode


def decode_all(dataset: Dataset, num_workers: int = 0, batch_size: int = 64) -> Tensor:
    """Decode every item of ``dataset`` (``(3, S, S)`` float in [0, 1]) into one tensor.

    Returns:
        (N, 3, S, S) uint8, item ``i`` at row ``i``.
    """
    # its own generator: a loader draws a seed on each iteration, and drawing it from the global
    # random state would change the training order (the batches would differ from no cache)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle=False,
        generator=torch.Generator(),
    )
    return torch.cat([to_uint8(images) for images in loader])


#: a packed item's line-art channel (1 = ink, 0 = paper) is all -1 without line art: stored as
#: this value, which no 0/1 line art gives
NO_LINE_ART = 127


def to_uint8(images: Tensor) -> Tensor:
    """(N, C, S, S) float in [0, 1] -> uint8; with 4 channels (packed: picture + line art),
    the fourth channel's -1 (no line art) becomes :data:`NO_LINE_ART`."""
    # float32 k / 255 times 255 rounds back to k exactly, so nothing is lost
    stored = images.mul(255).round_()
    if images.shape[-3] == 4:
        stored[..., 3, :, :] = torch.where(
            images[..., 3, :, :] < 0, NO_LINE_ART, stored[..., 3, :, :]
        )
    return stored.to(torch.uint8)


def to_float(images: Tensor) -> Tensor:
    """``uint8`` images -> float32 in [0, 1], bit-identical to :func:`load_image`'s division
    (a packed line-art channel of :data:`NO_LINE_ART` back to -1)."""
    values = images.to(torch.float32) / 255.0
    if images.shape[-3] == 4:
        line = images[..., 3, :, :]
        values[..., 3, :, :] = torch.where(line == NO_LINE_ART, -1.0, values[..., 3, :, :])
    return values


class CachedImages(Dataset):
    """A decoded split in host memory: item ``i`` is ``(3, S, S)`` float32 in [0, 1].

    Args:
        images: (N, 3, S, S) uint8 from :func:`decode_all`.
        indices_only: yield ``None`` instead of the image (``data.cache=device``: the image is
            gathered on the device from :attr:`images`).
    """

    def __init__(self, images: Tensor, indices_only: bool = False) -> None:
        self.images = images
        self.indices_only = indices_only

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        if self.indices_only:
            return None
        return to_float(self.images[index])


class DeviceImages:
    """One copy of a cached split per device, made on first use."""

    def __init__(self, images: Tensor) -> None:
        self.images = images
        self._copies: dict[torch.device, Tensor] = {}

    def gather(self, index: Tensor) -> Tensor:
        """(B,) indices on a device -> (B, 3, S, S) float32 in [0, 1] on that device."""
        device = index.device
        if device not in self._copies:
            self._copies[device] = self.images.to(device)
        return to_float(self._copies[device][index])
