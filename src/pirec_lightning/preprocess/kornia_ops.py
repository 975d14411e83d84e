"""PI-REC's inputs made with Kornia's own ops (``data.preprocess_backend=kornia``).

The same recipe as the engine (:mod:`~pirec_lightning.preprocess.edges`, ``median``, ``kmeans``),
built from ``kornia.filters.canny``, ``kornia.filters.median_blur`` and ``kornia.contrib.KMeans``,
so the two can be compared (``benchmarks/preprocess.py``) and a user can pick either. Where
Kornia's ops take one parameter for a whole batch, samples are grouped by parameter:

- Canny: grey with scikit-image's ``rgb2gray`` weights, a per-sample sigma tensor (Kornia
  supports that), kernel ``2 * ceil(4 * max sigma) + 1`` (scikit-image's truncate = 4), the
  thresholds 0.1 / 0.2 of scikit-image on the same unnormalised Sobel magnitude;
- median: one ``median_blur`` call per distinct kernel size, on 8-bit levels with replicated
  borders as OpenCV; it materialises every window (k * k values per pixel), so batches are cut
  into pieces that fit :data:`MEDIAN_ELEMENTS`;
- K-means: ``kornia.contrib.KMeans`` fitted per image (its API takes one point set), on every
  pixel, seeded from the generator (in a forked global random state: Kornia seeds the global one).
"""

from __future__ import annotations

import math

import kornia
import torch
from kornia.contrib import KMeans
from torch import Tensor

from pirec_lightning.preprocess._checks import check_images, per_sample
from pirec_lightning.preprocess.edges import GRAY_WEIGHTS

__all__ = ["kornia_canny_edges", "kornia_color_domain", "kornia_median_blur"]

#: most window values ``median_blur`` may hold at once (~1 GB of float32)
MEDIAN_ELEMENTS = 1 << 28


def kornia_canny_edges(images: Tensor, sigma: float | Tensor) -> Tensor:
    """Canny edges with ``kornia.filters.canny``: (B, 3, H, W) in [0, 1] -> (B, 1, H, W) in {0, 1}.

    Args:
        images: (B, 3, H, W) float in [0, 1].
        sigma: Gaussian sigma, a float or a (B,) tensor.

    >>> kornia_canny_edges(torch.rand(2, 3, 32, 32), torch.tensor([2.0, 3.0])).shape
    torch.Size([2, 1, 32, 32])
    """
    check_images(images, channels=3)
    batch = images.shape[0]
    sigma = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).expand(batch)
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    grey = (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    size = 2 * math.ceil(4 * float(sigma.max())) + 1
    size = min(size, 2 * ((min(images.shape[-2:]) - 1) // 2) + 1)  # Kornia's limit: < image
    _, edges = kornia.filters.canny(
        grey, 0.1, 0.2, kernel_size=size, sigma=torch.stack([sigma, sigma], 1)
    )
    return (edges > 0).to(images.dtype)


def kornia_median_blur(images: Tensor, kernel_size: int | Tensor) -> Tensor:
    """Median blur with ``kornia.filters.median_blur``, one call per distinct kernel size.

    Inputs are rounded to 8-bit levels and borders replicated, as ``cv2.medianBlur`` does.

    Args:
        images: (B, C, H, W) float in [0, 1].
        kernel_size: odd int or (B,) tensor of odd sizes.

    Returns:
        (B, C, H, W) in [0, 1].

    >>> kornia_median_blur(torch.rand(2, 3, 16, 16), 3).shape
    torch.Size([2, 3, 16, 16])
    """
    check_images(images)
    batch = images.shape[0]
    kernel = per_sample(kernel_size, batch, name="kernel_size", odd=True)
    levels = (images * 255).round_().clamp_(0, 255) / 255
    return _median_by_kernel(levels, kernel)


def _median_by_kernel(images: Tensor, kernel: Tensor) -> Tensor:
    out = images.clone()
    pixels = images[0].numel() if len(images) else 1
    for k in kernel.unique().tolist():
        if k == 1:
            continue
        rows = (kernel == k).nonzero().flatten().to(images.device)
        step = max(1, MEDIAN_ELEMENTS // (pixels * k * k))
        for piece in rows.split(step):
            out[piece] = kornia.filters.median_blur(images[piece], k, border_type="replicate")
    return out


def kornia_kmeans(
    images: Tensor, k: int | Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Paint every pixel its ``kornia.contrib.KMeans`` cluster's center, fitted per image.

    Args:
        images: (B, 3, H, W) float in [0, 1].
        k: number of colors, an int or a (B,) tensor.
        generator: draws each image's K-means seed.

    Returns:
        (B, 3, H, W) in [0, 1].
    """
    batch, channels, height, width = images.shape
    k = per_sample(k, batch, name="k").tolist()
    seeds = torch.randint(2**31 - 1, (batch,), generator=generator, device=_device(generator))
    out = torch.empty_like(images)
    for i, (clusters, seed) in enumerate(zip(k, seeds.tolist())):
        points = images[i].reshape(channels, -1).T.contiguous()
        clusters = min(clusters, len(points))
        # Kornia's `seed` reseeds torch's global generator; seed a forked one instead, so the
        # augmentations and the loader's shuffling are not reset every batch
        cuda = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(seed))
            kmeans = KMeans(clusters, None, tolerance=1e-4, max_iterations=10)
            kmeans.fit(points)
        painted = kmeans.cluster_centers[kmeans.cluster_assignments]
        out[i] = painted.T.reshape(channels, height, width)
    return out.clamp_(0, 1)


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def kornia_color_domain(
    images: Tensor,
    median_kernel: int | Tensor,
    k: int | Tensor,
    second_median_kernel: int | Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PI-REC's color domain with Kornia's ops: median -> K-means -> median.

    Args and result as :func:`pirec_lightning.preprocess.color.color_domain`.

    >>> kornia_color_domain(torch.rand(2, 3, 16, 16), 5, 3, 3).shape
    torch.Size([2, 3, 16, 16])
    """
    check_images(images, channels=3)
    batch = images.shape[0]
    second = per_sample(second_median_kernel, batch, name="second_median_kernel", odd=True)
    blurred = kornia_median_blur(images, median_kernel)
    quantized = kornia_kmeans(blurred, k, generator=generator)
    # the K colors need no 8-bit rounding: a median picks one of them
    return _median_by_kernel(quantized, second).to(images.dtype)
