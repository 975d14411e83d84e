"""Median filter for batches of images, equal to OpenCV's ``cv2.medianBlur`` on 8-bit values.

Two exact implementations share one entry point, :func:`median_blur`:

``"histogram"`` (any device, batched, what a GPU runs)
    The median of a window is the smallest level ``v`` with ``count(x <= v) >= (k*k + 1) / 2``,
    so the median level is ``sum_v [count(x <= v) < half]``. For each level the window counts of
    the indicator ``x <= v`` are one separable box filter, computed as two batched matrix
    products with per-sample band matrices that hold the replicated border; the matrices are
    dense, so time and memory do not depend on the kernel size, and a per-sample kernel size is
    just a per-sample matrix. Counts are small integers: exact in float16 (used on CUDA for
    k <= 45) and float32, also under TF32 or bfloat16 matmul settings for k <= 255.
``"radix"`` (any device, batched)
    The same box counts, but by radix selection over the 8 bits: each bit step box-filters only
    the candidate thresholds some pixel of the image plane needs (see
    :mod:`pirec_lightning.preprocess.median_radix`), at most the histogram's 255 in total and
    far fewer on planes with few distinct medians.
``"opencv"`` (CPU)
    ``cv2.medianBlur`` per image and channel on a thread pool (OpenCV releases the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import ModuleType

import torch
from torch import Tensor, nn

from pirec_lightning.preprocess._box import _CHUNK_ELEMENTS, _box_operands
from pirec_lightning.preprocess._checks import check_images, per_sample
from pirec_lightning.preprocess.median_radix import median_levels_radix

METHODS = ("auto", "histogram", "radix", "opencv")


def median_blur(images: Tensor, kernel_size: int | Tensor, method: str = "auto") -> Tensor:
    r"""Blur images with a ``kernel_size`` x ``kernel_size`` median filter, borders replicated.

    Inputs are quantized to 256 levels (``round(x * 255)``), so on 8-bit-valued images
    (values ``k / 255``) the result equals ``cv2.medianBlur`` on the ``uint8`` image; other
    inputs come out on the same 1/255 grid. Not differentiable.

    Args:
        images: (B, C, H, W) float in [0, 1], any C.
        kernel_size: odd int >= 1, or a (B,) integer tensor of odd sizes, one per sample.
        method: ``"histogram"`` or ``"radix"`` (batched tensor methods, any device), ``"opencv"``
            (``cv2.medianBlur`` on a thread pool; tensors on other devices go through the
            CPU) or ``"auto"``: ``"opencv"`` for CPU tensors when OpenCV is installed,
            else ``"histogram"``.

    Returns:
        (B, C, H, W) in [0, 1], multiples of 1/255, same dtype and device as ``images``.

    Example:
        >>> images = torch.rand(2, 3, 32, 32)
        >>> median_blur(images, 5).shape
        torch.Size([2, 3, 32, 32])
        >>> torch.equal(median_blur(images, 5), median_blur(images, 5, method="histogram"))
        True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_images(images)
    kernel = per_sample(kernel_size, images.shape[0], name="kernel_size", odd=True)
    return blur_levels(images, kernel, method)


def blur_levels(
    images: Tensor, kernel: Tensor, method: str = "auto", largest: int | None = None
) -> Tensor:
    """:func:`median_blur` of checked inputs: ``kernel`` a (B,) int64 tensor of odd sizes, all
    <= ``largest`` when given (see :func:`median_of_levels`)."""
    bounds = None if largest is None else (largest, 255)
    blurred = median_of_levels(quantize(images), kernel, method, bounds=bounds)
    return _level_table(images.dtype, images.device)[blurred.long()]


@cache
def _level_table(dtype: torch.dtype, device: torch.device) -> Tensor:
    """level / 255 for the 256 levels, made on the CPU (CUDA divides by a scalar through its
    reciprocal, which would put some values one ulp off the CPU's and off the 8-bit grid) and
    copied to ``device`` once (each copy from the host would wait for the stream)."""
    return torch.arange(256, dtype=dtype).div_(255).to(device)


class MedianBlur(nn.Module):
    r"""Module form of :func:`median_blur`.

    Args:
        kernel_size: odd int >= 1, or a (B,) integer tensor of odd sizes, one per sample.
        method: ``"auto"``, ``"histogram"``, ``"radix"`` or ``"opencv"``; see :func:`median_blur`.

    Shape:
        - Input: (B, C, H, W) float in [0, 1].
        - Output: (B, C, H, W) in [0, 1].

    Example:
        >>> blur = MedianBlur(3)
        >>> blur(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, kernel_size: int | Tensor, method: str = "auto") -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not isinstance(kernel_size, Tensor):
            per_sample(kernel_size, 1, name="kernel_size", odd=True)
        self.kernel_size = kernel_size
        self.method = method

    def forward(self, images: Tensor) -> Tensor:
        return median_blur(images, self.kernel_size, self.method)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, method={self.method!r}"


def quantize(images: Tensor) -> Tensor:
    """Map [0, 1] images to their nearest of 256 levels: (B, C, H, W) int16 in [0, 255]."""
    return (images * 255).round_().clamp_(0, 255).to(torch.int16)


def median_of_levels(
    levels: Tensor,
    kernel: Tensor,
    method: str = "auto",
    *,
    bounds: tuple[int, int] | None = None,
) -> Tensor:
    """Exact median of integer levels in [0, 255] with per-sample odd ``kernel`` sizes.

    ``method`` as in :func:`median_blur`: ``"auto"`` runs OpenCV on the CPU (when installed)
    and the batched histogram method elsewhere. ``bounds`` ``(largest kernel, top level)``,
    when the caller knows them (kernels <= the first, levels in [0, top]), spare the histogram
    method its reads of the kernels' and levels' extremes (same result, no host sync).

    Returns:
        (B, C, H, W) int64 on the levels' device.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        method = "opencv" if levels.device.type == "cpu" and _cv2() is not None else "histogram"
    if method == "opencv":
        return _opencv_median(levels, kernel.cpu()).to(levels.device).long()
    if method == "radix":  # levels in [0, 255]: 8-bit images, or the ranks of K colors
        return median_levels_radix(levels, kernel.to(levels.device) // 2)
    radius = kernel.to(levels.device) // 2
    if bounds is None:
        return median_levels(levels, radius)
    return median_levels(levels, radius, max_radius=bounds[0] // 2, top=bounds[1])


def median_levels(
    levels: Tensor, radius: Tensor, *, max_radius: int | None = None, top: int | None = None
) -> Tensor:
    """Exact median filter of integer levels, batched, with a per-sample window radius.

    Cost per pixel and level is O(H + W) whatever the radius, and only the levels between the
    batch's minimum and maximum are visited, so a few-level image (a K-color image ranked to
    ``0..K-1``) costs a few levels only.

    Args:
        levels: (B, C, H, W) integer tensor with values in [0, 32767].
        radius: (B,) int64 tensor >= 0 on the same device; the window is 2 * radius + 1 wide.
        max_radius: the largest radius, when known (else read from ``radius``).
        top: the highest possible level, when known: the thresholds then run over
            ``0 .. top`` instead of the levels' own minimum .. maximum (read from the device);
            the result is the same.

    Returns:
        (B, C, H, W) int64, the median level of each window, borders replicated.

    Example:
        >>> levels = torch.tensor([[[[0, 9, 0, 0], [0, 0, 7, 7], [0, 7, 7, 7]]]])
        >>> median_levels(levels, torch.tensor([1]))[0, 0]  # the lone 9 goes, the edge stays
        tensor([[0, 0, 0, 0],
                [0, 0, 7, 7],
                [0, 7, 7, 7]])
    """
    batch, channels, height, width = levels.shape
    if max_radius is None:
        max_radius = int(radius.max()) if len(radius) else 0
    if levels.numel() == 0 or max_radius == 0:
        return levels.long()
    # below ``low`` every window count is 0 < half, so extra thresholds there add exactly
    # ``low``; above ``high`` none adds: any range around the levels gives the same median
    low, high = (0, top) if top is not None else (int(v) for v in torch.aminmax(levels))
    rows, down, across, half, dtype = _box_operands(levels, radius, max_radius)
    half = half.view(batch, 1, 1, 1, 1)
    median = torch.full_like(rows, low, dtype=torch.int32)
    step = max(1, _CHUNK_ELEMENTS // rows.numel())
    for start in range(low, high, step):
        thresholds = torch.arange(start, min(start + step, high), device=levels.device)
        count = len(thresholds)
        below = torch.empty(
            batch, height, channels, count, width, dtype=dtype, device=levels.device
        )
        torch.le(rows.unsqueeze(3), thresholds.view(count, 1), out=below)
        column_sums = torch.bmm(down, below.view(batch, height, -1))
        window = torch.bmm(column_sums.view(batch, -1, width), across)
        median += (window.view_as(below) < half).sum(3, dtype=torch.int32)
    return median.permute(0, 2, 1, 3).contiguous().long()


@cache
def _cv2() -> ModuleType | None:
    """OpenCV if installed, imported on first use."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="median")


# a forked child (a DataLoader worker) has none of the pool's threads: it makes its own
os.register_at_fork(after_in_child=_pool.cache_clear)


def _opencv_median(levels: Tensor, kernel: Tensor) -> Tensor:
    """``cv2.medianBlur`` of every (image, channel) plane on a thread pool: (B, C, H, W) int16."""
    cv2 = _cv2()
    if cv2 is None:
        raise ImportError('method="opencv" needs OpenCV: pip install opencv-python-headless')
    batch, channels, height, width = levels.shape
    planes = levels.to(device="cpu", dtype=torch.uint8).reshape(-1, height, width).numpy()
    sizes = kernel.repeat_interleave(channels).tolist() if channels else []
    out = planes.copy()

    def blur(i: int) -> None:
        if sizes[i] > 1:
            out[i] = cv2.medianBlur(planes[i], sizes[i])

    if torch.get_num_threads() == 1:  # one thread asked for (DataLoader workers): no pool
        for i in range(len(sizes)):
            blur(i)
    else:
        list(_pool().map(blur, range(len(sizes))))
    return torch.from_numpy(out).view(batch, channels, height, width).to(torch.int16)
