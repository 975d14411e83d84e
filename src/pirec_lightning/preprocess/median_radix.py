"""Exact median filter by radix selection: 8 bit steps of box counts instead of 256 levels.

The median ``m`` of a window is the largest level with ``count(x < m) < half``, ``half =
(k * k + 1) / 2``. Radix selection finds it bit by bit, from the top: with the bits found so far
(the prefix ``p``) the candidate is ``c = p + 2**bit`` and the bit is set when
``count(x < c) < half``. Each count is one box filter of the indicator ``x < c``, computed as in
the histogram method (two batched matrix products with per-sample band matrices holding the
replicated border, so the cost does not depend on the kernel size).

The histogram method box-filters every level between the batch's minimum and maximum (up to 255
indicator images). Here a step box-filters only the candidates some pixel of the same image
plane needs: at bit ``b`` a plane's candidates are its distinct prefixes, at most ``2**(7 - b)``
and at most the number of distinct medians the plane has, so a plane with few distinct medians
(flat colors: emoji, drawings, any heavily blurred image) costs a few box filters per step; a
plane of a photo with many distinct medians costs up to the histogram's 255. The result is the
same exact median either way; ``benchmarks/preprocess.py`` measures both.

One host sync per bit step reads the largest candidate count (the slot count of the batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pirec_lightning.preprocess._box import _CHUNK_ELEMENTS, _box_operands

BITS = 8


def median_levels_radix(levels: Tensor, radius: Tensor) -> Tensor:
    """Exact median filter of 8-bit levels, batched, with a per-sample window radius.

    Args:
        levels: (B, C, H, W) integer tensor with values in [0, 255].
        radius: (B,) int64 tensor >= 0 on the same device; the window is 2 * radius + 1 wide.

    Returns:
        (B, C, H, W) int64, the median level of each window, borders replicated (as
        ``cv2.medianBlur``).

    Example:
        >>> levels = torch.tensor([[[[0, 9, 0, 0], [0, 0, 7, 7], [0, 7, 7, 7]]]])
        >>> median_levels_radix(levels, torch.tensor([1]))[0, 0]
        tensor([[0, 0, 0, 0],
                [0, 0, 7, 7],
                [0, 7, 7, 7]])
    """
    batch, channels, height, width = levels.shape
    if levels.numel() == 0 or not bool((radius > 0).any()):
        return levels.long()
    device = levels.device
    rows, down, across, half, dtype = _box_operands(levels, radius)  # rows: (B, H, C, W)
    half = half.view(batch, 1, 1, 1)
    prefix = torch.zeros_like(rows, dtype=torch.int64)
    plane = torch.arange(channels, device=device).view(1, 1, channels, 1)
    for bit in reversed(range(BITS)):
        step = 1 << bit
        options = 1 << (BITS - 1 - bit)  # distinct prefixes possible at this step
        key = prefix >> (bit + 1)  # (B, H, C, W) in [0, options)
        present = torch.zeros(batch, channels, options, dtype=torch.bool, device=device)
        index = (plane * options + key).reshape(batch, -1)
        present.view(batch, -1).scatter_(1, index, True)
        distinct = present.sum(-1)  # (B, C)
        slots = int(distinct.max())  # the one sync of the step
        slot_of_key = present.cumsum(-1) - 1  # (B, C, options)
        # keys present in each plane, ascending, padded with 0 (counted but never picked)
        keys = torch.sort(torch.where(present, torch.arange(options, device=device), options), -1)
        keys = keys.values[..., :slots].clamp_(max=options - 1)  # (B, C, S)
        thresholds = (keys << (bit + 1)) + step
        slot = (
            slot_of_key.gather(2, key.permute(0, 2, 1, 3).reshape(batch, channels, -1))
            .view(batch, channels, height, width)
            .permute(0, 2, 1, 3)
        )  # (B, H, C, W)
        count = _counts_below(rows, thresholds, slot, down, across, dtype)
        prefix = torch.where(count < half, prefix + step, prefix)
    return prefix.permute(0, 2, 1, 3).contiguous()


def _counts_below(
    rows: Tensor, thresholds: Tensor, slot: Tensor, down: Tensor, across: Tensor, dtype
) -> Tensor:
    """Window count of ``x < thresholds[b, c, slot]`` at every pixel: (B, H, C, W) in ``dtype``.

    ``rows`` (B, H, C, W) levels, ``thresholds`` (B, C, S), ``slot`` (B, H, C, W) in [0, S).
    """
    batch, height, channels, width = rows.shape
    slots = thresholds.shape[-1]
    count = torch.zeros(rows.shape, dtype=dtype, device=rows.device)
    chunk = max(1, _CHUNK_ELEMENTS // rows.numel())
    for start in range(0, slots, chunk):
        part = thresholds[..., start : start + chunk]  # (B, C, s)
        size = part.shape[-1]
        below = (rows.unsqueeze(3) < part.view(batch, 1, channels, size, 1)).to(dtype)
        sums = torch.bmm(down, below.view(batch, height, -1))
        window = torch.bmm(sums.view(batch, -1, width), across).view(below.shape)
        local = (slot - start).clamp(0, size - 1).unsqueeze(3)
        picked = window.gather(3, local).squeeze(3)
        inside = (slot >= start) & (slot < start + size)
        count = torch.where(inside, picked, count)
    return count
