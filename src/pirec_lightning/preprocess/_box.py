"""The box-filter operands both exact median methods share (histogram and radix)."""

from __future__ import annotations

import torch
from torch import Tensor

# Elements of one (B, H, C, levels, W) chunk: ~128 MB in float32, ~64 MB in float16; a few
# such buffers are alive at once.
_CHUNK_ELEMENTS = 1 << 25
# Largest count that float16 holds exactly (window counts reach k * k).
_FLOAT16_EXACT = 2048


def _box_operands(
    levels: Tensor, radius: Tensor, max_radius: int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, torch.dtype]:
    """What both exact median methods box-filter with: ``rows`` (B, H, C, W), the levels rows
    first so that both box sums are plain batched matrix products; ``down`` (B, H, H), summing
    rows; ``across`` (B, W, W), summing columns; ``half`` (B,), the count at which a window's
    median is reached; and the ``dtype`` the counts are exact in (float16 on CUDA when the
    largest window fits)."""
    _, _, height, width = levels.shape
    largest = 2 * (int(radius.max()) if max_radius is None else max_radius) + 1
    on_gpu = levels.device.type == "cuda"
    dtype = torch.float16 if on_gpu and largest**2 <= _FLOAT16_EXACT else torch.float32
    rows = levels.permute(0, 2, 1, 3).contiguous()
    down = _band_matrix(height, radius, dtype)
    across = _band_matrix(width, radius, dtype).transpose(1, 2)
    half = (((2 * radius + 1) ** 2 + 1) // 2).to(dtype)
    return rows, down, across, half, dtype


def _band_matrix(size: int, radius: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, size, size): entry [i, a] counts the window offsets of i that land on a, replicated.

    Row i covers ``i - r .. i + r``; positions outside ``0 .. size - 1`` clamp to the edge,
    which piles their count onto the first or last column.
    """
    index = torch.arange(size, device=radius.device)
    r = radius.view(-1, 1)
    band = ((index.view(1, -1, 1) - index.view(1, 1, -1)).abs() <= r.unsqueeze(2)).to(dtype)
    band[:, :, 0] += (r - index).clamp(min=0)
    band[:, :, -1] += (index + r - (size - 1)).clamp(min=0)
    return band
