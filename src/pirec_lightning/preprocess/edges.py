"""Batched Canny edges that reproduce ``skimage.feature.canny(rgb2gray(image), sigma)``.

PI-REC extracts its edge domain with scikit-image's Canny; this module mirrors that implementation
step by step so that the edges a model sees in training match the ones of the paper, while running
on whole batches on the device with a different ``sigma`` per sample:

1. grey = ``rgb2gray`` weights (0.2125, 0.7154, 0.0721);
2. Gaussian smoothing with ``truncate=4`` and zero padding, renormalised by the smoothed all-ones
   image (skimage's "bleed-over" correction). The Gaussian is separable and the correction is the
   outer product of the row sums, so both together are ``Gh @ grey @ Gw.T`` with row-normalised
   banded matrices ``Gh``, ``Gw``: one batched matmul pair, a per-sample sigma for free;
3. Sobel gradients as ``scipy.ndimage.sobel`` (mode ``reflect``, unnormalised);
4. non-maximum suppression with bilinear interpolation between the two neighbours in the
   gradient direction (a vectorised port of ``_nonmaximum_suppression_bilinear``), border zeroed;
5. hysteresis: skimage keeps the 8-connected components of the weak mask that contain a strong
   pixel; here strong pixels grow by 3x3 dilation inside the weak mask until nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pirec_lightning.preprocess._checks import check_images

__all__ = ["CannyEdges", "canny_edges"]

GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
TRUNCATE = 4.0
_CHECK_EVERY = 4


def _check_images(images: Tensor) -> None:
    check_images(images)
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have 3 (RGB) or 1 (grey) channels, got shape {tuple(images.shape)}"
        )
    if images.shape[-2] < 3 or images.shape[-1] < 3:
        raise ValueError(f"images must be at least 3x3 pixels, got {tuple(images.shape[-2:])}")


def _per_sample(
    value: float | Tensor, batch: int, name: str, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Broadcast a scalar or (B,) parameter to a (B,) tensor on ``device``."""
    value = torch.as_tensor(value, dtype=dtype, device=device)
    if value.ndim == 0:
        value = value.expand(batch)
    if value.shape != (batch,):
        raise ValueError(
            f"{name} must be a float or a ({batch},) tensor, got shape {tuple(value.shape)}"
        )
    return value


@contextmanager
def _exact_matmul(device_type: str) -> Iterator[None]:
    """Full float32 matmuls (no TF32, no autocast): edges sit on thresholds of the smoothed image."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(previous)


def gaussian_matrix(sigma: Tensor, size: int, dtype: torch.dtype | None = None) -> Tensor:
    r"""Row-normalised Gaussian smoothing matrices, one per sample.

    ``gaussian_matrix(sigma, H) @ x`` smooths the columns of ``x`` exactly as
    ``scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="constant", truncate=4)`` divided by the
    same filter applied to ones (the border renormalisation skimage's Canny applies).

    Args:
        sigma: (B,) standard deviations in pixels, > 0.
        size: length of the filtered axis.
        dtype: result dtype (defaults to ``sigma``'s).

    Returns:
        (B, size, size) matrices whose rows sum to 1.

    >>> gaussian_matrix(torch.tensor([1.0, 3.0]), 8).sum(-1)[0, :3]
    tensor([1., 1., 1.])
    """
    dtype = dtype or sigma.dtype
    offsets = torch.arange(size, device=sigma.device)
    sig = sigma.to(dtype)[:, None]
    radius = torch.floor(TRUNCATE * sig + 0.5)
    # One 1D profile per sample (B, size), then gathered by |i - j| into the banded matrix.
    profile = torch.exp(-0.5 * offsets.to(dtype).square() / sig.square()) * (offsets <= radius)
    weight = profile[:, (offsets[:, None] - offsets[None, :]).abs()]
    return weight / weight.sum(-1, keepdim=True)


def _gradients(smoothed: Tensor) -> tuple[Tensor, Tensor]:
    """``scipy.ndimage.sobel`` along rows (isobel) and columns (jsobel) with mode ``reflect``.

    A one-pixel ``reflect`` pad in scipy's sense repeats the edge pixel, i.e. torch's ``replicate``.
    """
    p = F.pad(smoothed, (1, 1, 1, 1), mode="replicate")
    dx = p[..., :, 2:] - p[..., :, :-2]
    jsobel = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]
    dy = p[..., 2:, :] - p[..., :-2, :]
    isobel = dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]
    return isobel, jsobel


def _nonmaximum_suppression(isobel: Tensor, jsobel: Tensor, magnitude: Tensor) -> Tensor:
    """Keep interior pixels that are maxima along the (interpolated) gradient direction.

    Returns a bool mask of the interior pixels (B, 1, H - 2, W - 2).
    """
    gi = isobel[..., 1:-1, 1:-1]
    gj = jsobel[..., 1:-1, 1:-1]
    m = magnitude[..., 1:-1, 1:-1]

    def shifted(di: int, dj: int) -> Tensor:
        h, w = magnitude.shape[-2:]
        return magnitude[..., 1 + di : h - 1 + di, 1 + dj : w - 1 + dj]

    ai, aj = gi.abs(), gj.abs()
    # Same sign (with 0 counted as negative) -> the normal points along the main diagonal.
    same_sign = (gi > 0) == (gj > 0)
    # Vertical-dominant: skimage breaks the |gi| == |gj| tie differently for the two diagonals.
    vertical = torch.where(same_sign, ai > aj, ai >= aj)
    w = torch.minimum(ai, aj) / torch.maximum(ai, aj).clamp_min(torch.finfo(m.dtype).tiny)

    down, up, right, left = shifted(1, 0), shifted(-1, 0), shifted(0, 1), shifted(0, -1)
    n1_1 = torch.where(vertical, torch.where(same_sign, down, up), right)
    n2_1 = torch.where(vertical, torch.where(same_sign, up, down), left)
    n1_2 = torch.where(same_sign, shifted(1, 1), shifted(-1, 1))
    n2_2 = torch.where(same_sign, shifted(-1, -1), shifted(1, -1))
    one_minus_w = 1.0 - w
    return (n1_2 * w + n1_1 * one_minus_w <= m) & (n2_2 * w + n2_1 * one_minus_w <= m)


def _dilate3x3(mask: Tensor) -> Tensor:
    """3x3 binary dilation of a bool (..., H, W) tensor as two separable passes of shifted ORs.

    Much cheaper than ``max_pool2d`` on CPU and exact for bool masks.
    """
    rows = mask.clone()
    rows[..., 1:] |= mask[..., :-1]
    rows[..., :-1] |= mask[..., 1:]
    out = rows.clone()
    out[..., 1:, :] |= rows[..., :-1, :]
    out[..., :-1, :] |= rows[..., 1:, :]
    return out


def hysteresis(weak: Tensor, strong: Tensor, max_iterations: int | None = None) -> Tensor:
    r"""Keep the 8-connected components of ``weak`` that contain a ``strong`` pixel.

    Strong pixels grow by 3x3 dilation restricted to ``weak`` until no sample changes (checked every
    few steps; converged samples leave the working set), which equals the connected-component
    labelling of skimage once converged.

    Args:
        weak: (B, 1, H, W) bool, candidate edge pixels.
        strong: (B, 1, H, W) bool, seed pixels (a subset of ``weak``).
        max_iterations: bound on dilation steps (default ``H * W``, i.e. always converge).

    Returns:
        (B, 1, H, W) bool.

    >>> weak = torch.zeros(1, 1, 5, 5, dtype=torch.bool); weak[0, 0, 2] = True
    >>> strong = torch.zeros_like(weak); strong[0, 0, 2, 0] = True
    >>> hysteresis(weak, strong).sum().item()
    5
    """
    if max_iterations is None:
        max_iterations = weak.shape[-2] * weak.shape[-1]
    edges = strong & weak
    # Only samples with weak-but-not-strong pixels can change.
    active = torch.nonzero((weak & ~strong).flatten(1).any(1)).flatten()
    steps = 0
    while active.numel() > 0 and steps < max_iterations:
        current, allowed = edges[active], weak[active]
        before = current
        for _ in range(min(_CHECK_EVERY, max_iterations - steps)):
            current = _dilate3x3(current) & allowed
        steps += _CHECK_EVERY
        edges[active] = current
        active = active[(current != before).flatten(1).any(1)]
    return edges > 0


def canny_edges(
    images: Tensor,
    sigma: float | Tensor,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
) -> Tensor:
    r"""Canny edges of a batch, matching ``skimage.feature.canny(rgb2gray(image), sigma)``.

    Args:
        images: (B, 3, H, W) RGB or (B, 1, H, W) grey, float in [0, 1].
        sigma: Gaussian standard deviation in pixels, a float or a (B,) tensor (one per sample).
        low_threshold: hysteresis low threshold on the gradient magnitude (skimage's default 0.1).
        high_threshold: hysteresis high threshold (skimage's default 0.2).

    Returns:
        (B, 1, H, W) edge map, same dtype as ``images``, values in {0, 1}.

    >>> images = torch.zeros(2, 3, 32, 32); images[:, :, 8:24, 8:24] = 1.0
    >>> edges = canny_edges(images, torch.tensor([1.0, 2.0]))
    >>> edges.shape, bool(edges[0, 0, 8, 12]), bool(edges[0, 0, 16, 16])
    (torch.Size([2, 1, 32, 32]), True, False)
    """
    _check_images(images)
    low = 0.1 if low_threshold is None else float(low_threshold)
    high = 0.2 if high_threshold is None else float(high_threshold)
    if high < low:
        raise ValueError(f"low_threshold ({low}) must not exceed high_threshold ({high})")
    batch, channels, height, width = images.shape
    out_dtype = images.dtype
    # Half precision cannot resolve the thresholds; work in float32 (or float64 if given).
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    images = images.to(dtype)
    sigma = _per_sample(sigma, batch, "sigma", dtype, images.device)
    if batch > 0 and not bool((sigma > 0).all()):
        raise ValueError("sigma must be > 0")
    if batch == 0:
        return images.new_zeros(0, 1, height, width, dtype=out_dtype)

    if channels == 3:
        r, g, b = GRAY_WEIGHTS
        grey = images[:, 0] * r + images[:, 1] * g + images[:, 2] * b
    else:
        grey = images[:, 0]
    rows = gaussian_matrix(sigma, height)
    cols = rows if width == height else gaussian_matrix(sigma, width)
    with _exact_matmul(images.device.type):
        smoothed = torch.matmul(torch.matmul(rows, grey), cols.transpose(1, 2)).unsqueeze(1)

    isobel, jsobel = _gradients(smoothed)
    magnitude = torch.sqrt(isobel.square() + jsobel.square())
    # skimage nudges a zero low threshold so that flat (zero-gradient) pixels are never edges.
    low = low if low > 0 else 1e-14
    interior = magnitude[..., 1:-1, 1:-1]
    weak = _nonmaximum_suppression(isobel, jsobel, magnitude) & (interior >= low)
    strong = weak & (interior >= high)
    edges = hysteresis(F.pad(weak, (1, 1, 1, 1)), F.pad(strong, (1, 1, 1, 1)))
    return edges.to(out_dtype)


class CannyEdges(nn.Module):
    r"""Module form of :func:`canny_edges` with fixed thresholds.

    Args:
        low_threshold: hysteresis low threshold (default 0.1 as skimage).
        high_threshold: hysteresis high threshold (default 0.2 as skimage).

    Shape:
        - images: (B, 3, H, W) or (B, 1, H, W) in [0, 1]; sigma: float or (B,)
        - output: (B, 1, H, W) in {0, 1}

    >>> CannyEdges()(torch.rand(2, 3, 16, 16), 2.0).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self, low_threshold: float | None = None, high_threshold: float | None = None
    ) -> None:
        super().__init__()
        self.low_threshold = low_threshold
        self.high_threshold = high_threshold

    def forward(self, images: Tensor, sigma: float | Tensor) -> Tensor:
        return canny_edges(images, sigma, self.low_threshold, self.high_threshold)
