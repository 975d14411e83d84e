"""PI-REC's color domain: median filter, K-means color quantization, median filter again."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ._checks import check_images, per_sample
from .kmeans import kmeans_colors
from .median import blur_levels, median_of_levels


def color_domain(
    images: Tensor,
    median_kernel: int | Tensor,
    k: int | Tensor,
    second_median_kernel: int | Tensor,
    *,
    generator: torch.Generator | None = None,
    method: str = "auto",
    maxima: Mapping[str, int] | None = None,
) -> Tensor:
    r"""Make PI-REC's color-domain image: median blur -> K-means colors -> median blur.

    The first median is :func:`median_blur` (8-bit levels, as ``cv2.medianBlur``). The second
    runs on the K-color image exactly, without rounding the cluster colors: each channel is
    ranked among the image's K colors, the rank image is median-filtered (a few levels only)
    and the ranks are mapped back to colors.

    Args:
        images: (B, 3, H, W) float in [0, 1].
        median_kernel: first median's odd kernel size (PI-REC: 15-35 at 128 px), an int or a
            (B,) integer tensor, one per sample.
        k: number of colors (PI-REC: 2-5), an int >= 1 or a (B,) integer tensor.
        second_median_kernel: second median's odd kernel size (PI-REC: 1, 3 or 5), an int or
            a (B,) integer tensor.
        generator: random generator on the images' device, for reproducible K-means.
        method: median method, as in :func:`median_blur` (``"auto"``: OpenCV on the CPU, the
            batched histogram method elsewhere); both are exact.
        maxima: for per-sample values drawn in range (the :class:`Preprocessor`'s): the
            largest ``median_kernel``, ``k`` and ``second_median_kernel`` of the batch. The
            values are then trusted: never read back from the device, neither to be checked
            nor to size the work (see :func:`kmeans_colors`, :func:`median_of_levels`).

    Returns:
        (B, 3, H, W) in [0, 1], same dtype as ``images``.

    Example:
        >>> images = torch.rand(2, 3, 32, 32)
        >>> color_domain(images, 15, torch.tensor([2, 5]), 3).shape
        torch.Size([2, 3, 32, 32])
    """
    check_images(images, channels=3)
    batch, _, height, width = images.shape
    top = maxima or {}
    check = maxima is None
    first = per_sample(median_kernel, batch, name="median_kernel", odd=True, check=check)
    per_sample(k, batch, name="k", check=check)
    second = per_sample(
        second_median_kernel, batch, name="second_median_kernel", odd=True, check=check
    )
    blurred = blur_levels(images, first, method, top.get("median_kernel"))
    # (B, H, W), (B, K, 3)
    labels, colors = kmeans_colors(blurred, k, generator=generator, k_max=top.get("k"))
    # Ranking is monotone, so the median of the ranks is the rank of the median color.
    values, order = colors.sort(dim=1)
    ranks = order.argsort(dim=1)  # (B, K, 3): rank of each cluster's color, per channel
    pixels = labels.reshape(batch, height * width, 1).expand(-1, -1, 3)
    levels = ranks.gather(1, pixels).transpose(1, 2).reshape(batch, 3, height, width)
    # the ranks of at most k_max colors: levels 0 .. k_max - 1
    bounds = (top["second_median_kernel"], top["k"] - 1) if maxima is not None else None
    median = median_of_levels(levels, second, method, bounds=bounds)
    median = median.reshape(batch, 3, height * width).transpose(1, 2)
    smooth = values.gather(1, median).transpose(1, 2).reshape(batch, 3, height, width)
    return smooth.to(images.dtype)


class ColorDomain(nn.Module):
    r"""Module form of :func:`color_domain`.

    Args:
        median_kernel: first median's odd kernel size, an int or a (B,) integer tensor.
        k: number of colors, an int >= 1 or a (B,) integer tensor.
        second_median_kernel: second median's odd kernel size, an int or a (B,) tensor.

    Shape:
        - Input: (B, 3, H, W) float in [0, 1].
        - Output: (B, 3, H, W) in [0, 1].

    Example:
        >>> ColorDomain(15, 3, 3)(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(
        self, median_kernel: int | Tensor, k: int | Tensor, second_median_kernel: int | Tensor
    ) -> None:
        super().__init__()
        for name, value, odd in (
            ("median_kernel", median_kernel, True),
            ("k", k, False),
            ("second_median_kernel", second_median_kernel, True),
        ):
            if not isinstance(value, Tensor):
                per_sample(value, 1, name=name, odd=odd)
        self.median_kernel = median_kernel
        self.k = k
        self.second_median_kernel = second_median_kernel

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return color_domain(
            images, self.median_kernel, self.k, self.second_median_kernel, generator=generator
        )

    def extra_repr(self) -> str:
        return (
            f"median_kernel={self.median_kernel}, k={self.k}, "
            f"second_median_kernel={self.second_median_kernel}"
        )
