"""Rows of ``benchmarks/preprocess.py`` that compare Kornia's ops with the engine's.

For each of Canny, the median and K-means, on the same images (``--kornia-images`` of them, one
batch) and with the same per-sample parameters: milliseconds per image of the engine and of
Kornia, and agreement with the reference PI-REC uses:

- Canny: pixel F1 (no tolerance) against ``skimage.feature.canny(rgb2gray(image), sigma)``;
- median (k = 15 and 35): the fraction of pixels equal to ``cv2.medianBlur``;
- K-means: mean squared quantization error over ``cv2.kmeans``'s (8 attempts), as a ratio;

and the whole backend (``Preprocessor(backend=...)``, edge + color domain) in images/s.
Peak memory of one Kornia k = 35 median and of one Kornia backend batch, both on
:data:`KORNIA_MEMORY_BATCH` images (Kornia's median holds k * k values per pixel; ``kornia_ops``
cuts batches into pieces of at most 2**28 of them, 4 images at 128 px and k = 35, so a larger batch
has the same peak and only takes longer), come from ``preprocess.py``'s ``--_rss`` children (CPU)
or ``max_memory_allocated`` (CUDA).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from pirec_lightning.preprocess import canny_edges, kmeans_quantize, median_blur
from pirec_lightning.preprocess.confusion import ConfusionConfig, Preprocessor, sample_confusion
from pirec_lightning.preprocess.kornia_ops import (
    kornia_canny_edges,
    kornia_kmeans,
    kornia_median_blur,
)


def _timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        run()  # warm-up (kernels, allocator); the CPU needs none
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


#: images in the Kornia memory measurements
KORNIA_MEMORY_BATCH = 8


def _f1(ours: np.ndarray, reference: np.ndarray) -> float:
    both = (ours & reference).sum()
    return float(2 * both / max(ours.sum() + reference.sum(), 1))


def kornia_rows(images: torch.Tensor, generator_seed: int = 0) -> dict:
    """Figures of the engine and Kornia on ``images`` ((N, 3, S, S) in [0, 1] on a device)."""
    import cv2
    from skimage.color import rgb2gray
    from skimage.feature import canny

    device, count, size = images.device, len(images), images.shape[-1]
    draws = sample_confusion(
        count, ConfusionConfig(), size, generator=torch.Generator().manual_seed(generator_seed)
    )
    draws = {key: value.to(device) for key, value in draws.items()}
    host = (images.cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    rows: dict = {"kornia_images": count}

    # Canny at the drawn sigmas
    sigma = draws["canny_sigma"]
    references = [canny(rgb2gray(image), sigma=float(s)) for image, s in zip(host, sigma)]
    for name, op in (("engine", canny_edges), ("kornia", kornia_canny_edges)):
        edges, seconds = _timed(lambda op=op: op(images, sigma), device)
        f1 = [_f1(e[0].bool().cpu().numpy(), r) for e, r in zip(edges, references)]
        rows[f"canny_{name}_ms_per_image"] = round(seconds / count * 1000, 2)
        rows[f"canny_{name}_f1_vs_skimage"] = round(float(np.mean(f1)), 4)

    # median at k = 15 and 35 (the confusion range's ends at 128 px)
    for k in (15, 35):
        expected = np.stack([cv2.medianBlur(image, k) for image in host])
        for name, op in (
            ("engine", lambda k=k: median_blur(images, k)),
            ("radix", lambda k=k: median_blur(images, k, method="radix")),
            ("kornia", lambda k=k: kornia_median_blur(images, k)),
        ):
            out, seconds = _timed(op, device)
            levels = (out.cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            rows[f"median{k}_{name}_ms_per_image"] = round(seconds / count * 1000, 2)
            rows[f"median{k}_{name}_equal_to_opencv"] = round(float((levels == expected).mean()), 6)

    # K-means at the drawn K, on the first median's output as PI-REC does
    blurred = median_blur(images, draws["median_kernel"])
    k = draws["k"]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    reference_error = []
    for image, clusters in zip((blurred.cpu() * 255).permute(0, 2, 3, 1).numpy(), k.tolist()):
        pixels = image.reshape(-1, 3).astype(np.float32)
        compactness, _, _ = cv2.kmeans(pixels, clusters, None, criteria, 8, cv2.KMEANS_PP_CENTERS)
        reference_error.append(compactness / len(pixels) / 255**2)
    for name, op in (
        ("engine", lambda: kmeans_quantize(blurred, k, generator=_gen(device))),
        ("kornia", lambda: kornia_kmeans(blurred, k, generator=_gen(device))),
    ):
        out, seconds = _timed(op, device)
        error = ((out - blurred) ** 2).sum(1).mean((1, 2)).cpu().numpy()
        rows[f"kmeans_{name}_ms_per_image"] = round(seconds / count * 1000, 2)
        rows[f"kmeans_{name}_error_vs_opencv"] = round(
            float(np.mean(error / np.maximum(reference_error, 1e-12))), 3
        )

    # the whole backend: edge (with dropout) + color domain under confusion
    for name in ("engine", "kornia"):
        pre = Preprocessor(size, seed=0, backend=name)
        _, seconds = _timed(lambda pre=pre: pre(images, outputs=("edge", "color_domain")), device)
        rows[f"backend_{name}_images_per_s"] = round(count / seconds, 1)
    return rows


def _gen(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)
