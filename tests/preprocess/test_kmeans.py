"""Tests for pirec_lightning.preprocess.kmeans: kmeans_quantize, KMeansQuantize, kmeans_colors."""

from __future__ import annotations

import doctest

import cv2
import numpy as np
import pytest
import torch

from pirec_lightning.preprocess import kmeans
from pirec_lightning.preprocess.kmeans import KMeansQuantize, kmeans_colors, kmeans_quantize
from pirec_lightning.preprocess.median import median_blur


def seeded(device: torch.device | str = "cpu", seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def squared_error(images: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """(B,) mean over pixels of the squared color distance."""
    return (images - quantized).square().sum(1).flatten(1).mean(1)


def n_colors(image: torch.Tensor) -> int:
    return image.flatten(1).unique(dim=1).shape[1]


@pytest.fixture(scope="module")
def blurred(real_images: torch.Tensor) -> torch.Tensor:
    """Real images after PI-REC's first median (k = 21 at 128 px): what K-means sees."""
    return median_blur(real_images, 21)


def test_smoke(device: torch.device, dtype: torch.dtype) -> None:
    images = torch.rand(2, 3, 10, 12, device=device, dtype=dtype)
    out = kmeans_quantize(images, 3, generator=seeded(device))
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert out.min() >= 0 and out.max() <= 1
    assert all(n_colors(image) == 3 for image in out)


@pytest.mark.parametrize("batch", [0, 1, 2])
def test_cardinality(batch: int, device: torch.device) -> None:
    images = torch.rand(batch, 3, 6, 5, device=device)
    assert kmeans_quantize(images, 2).shape == (batch, 3, 6, 5)
    k = torch.full((batch,), 2, device=device)
    assert kmeans_quantize(images, k).shape == (batch, 3, 6, 5)


def test_exceptions() -> None:
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        kmeans_quantize(images[0], 3)
    with pytest.raises(ValueError, match="3 channels"):
        kmeans_quantize(images[:, :1], 3)
    with pytest.raises(TypeError, match=r"floating-point tensor in \[0, 1\].*convert"):
        kmeans_quantize((images * 255).byte(), 3)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        kmeans_quantize(images, 0)
    with pytest.raises(ValueError, match=r"k must be >= 1, got \[2, 0\]"):
        kmeans_quantize(images, torch.tensor([2, 0]))
    with pytest.raises(ValueError, match=r"k must be an int or a tensor of shape \(2,\)"):
        kmeans_quantize(images, torch.tensor([2, 3, 4]))
    with pytest.raises(TypeError, match="integer tensor"):
        kmeans_quantize(images, torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="iterations >= 0"):
        kmeans_quantize(images, 2, iterations=-1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        KMeansQuantize(0)


def test_module_equals_function(device: torch.device) -> None:
    images = torch.rand(2, 3, 12, 12, device=device)
    module = KMeansQuantize(4, iterations=5, sample_size=64)
    expected = kmeans_quantize(images, 4, 5, sample_size=64, generator=seeded(device))
    assert torch.equal(module(images, generator=seeded(device)), expected)
    assert "k=4" in repr(module)


def test_deterministic_with_generator(blurred: torch.Tensor, device: torch.device) -> None:
    images = blurred[:4].to(device)
    first = kmeans_quantize(images, 4, generator=seeded(device, 7))
    assert torch.equal(first, kmeans_quantize(images, 4, generator=seeded(device, 7)))


def test_per_sample_k(blurred: torch.Tensor, device: torch.device) -> None:
    """Sample b with k_b gives what a batch run with k = k_b everywhere gives it (same seed),
    and as many colors and as good a fit as that image clustered alone."""
    images = blurred[[0, 2, 4, 6]].to(device)
    ks = [2, 5, 1, 3]
    out = kmeans_quantize(images, torch.tensor(ks, device=device), generator=seeded(device))
    for i, k in enumerate(ks):
        uniform = kmeans_quantize(images, k, generator=seeded(device))
        assert torch.equal(out[i], uniform[i]), k
        alone = kmeans_quantize(images[i : i + 1], k, generator=seeded(device))
        assert n_colors(out[i]) == k
        error, error_alone = (
            squared_error(images[i : i + 1], out[i : i + 1]),
            squared_error(images[i : i + 1], alone),
        )
        assert error <= 1.1 * error_alone + 1e-7, k


def test_colors_are_cluster_means(blurred: torch.Tensor) -> None:
    images = blurred[:3]
    labels, colors = kmeans_colors(images, 4, generator=seeded())
    assert labels.shape == (3, 128, 128) and colors.shape == (3, 4, 3)
    for image, label, color in zip(images, labels, colors):
        for cluster in label.unique():
            pixels = image[:, label == cluster]
            torch.testing.assert_close(color[cluster], pixels.mean(1), atol=1e-5, rtol=0)
    assert torch.equal(
        kmeans_quantize(images, 4, generator=seeded()), kmeans._paint(labels, colors)
    )


def test_fewer_colors_than_k() -> None:
    """Empty clusters: a two-color image with k = 5 comes back unchanged, without NaN."""
    images = torch.zeros(2, 3, 8, 8)
    images[:, 0, :, :4] = 1.0
    images[1] = 0.5  # flat
    out = kmeans_quantize(images, 5, generator=seeded())
    assert torch.equal(out, images)


def test_error_close_to_opencv(blurred: torch.Tensor) -> None:
    """Within 5% of cv2.kmeans (8 attempts, k-means++) over 8 real images and K = 2..5."""
    ours, reference = [], []
    for k in (2, 3, 4, 5):
        ours.append(squared_error(blurred, kmeans_quantize(blurred, k, generator=seeded())))
        cv2.setRNGSeed(0)
        errors = []
        for image in blurred:
            pixels = (image.flatten(1).T * 255).numpy().astype(np.float32)
            criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
            _, labels, centers = cv2.kmeans(pixels, k, None, criteria, 8, cv2.KMEANS_PP_CENTERS)
            errors.append(((pixels - centers[labels[:, 0]]) ** 2).sum(1).mean() / 255**2)
        reference.append(torch.tensor(errors))
    ours, reference = torch.stack(ours), torch.stack(reference)  # (K values, images)
    assert ours.sum() <= 1.05 * reference.sum()
    assert (ours <= 1.15 * reference + 1e-6).all(), ours / reference


def test_docstring_examples() -> None:
    assert doctest.testmod(kmeans).failed == 0


def test_pass_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point-to-center distances of the Lloyd steps and the final assignment, per image at the
    defaults (1024-pixel sample, 4 attempts, 10 steps, narrowed to the best attempt after 2):
    2 steps x 4 attempts + the narrowing + 8 steps x 1 + all 4096 pixels, each x k = 5; all
    4 attempts through all 10 steps cost twice that."""
    evaluated = []
    assign = kmeans._assign

    def counted(points, centers, active):
        evaluated.append(points.shape[0] * points.shape[2] * centers.shape[1])
        return assign(points, centers, active)

    monkeypatch.setattr(kmeans, "_assign", counted)
    images = torch.rand(2, 3, 64, 64)
    kmeans_colors(images, 5, generator=seeded())
    per_image = (2 * 4 * 1024 + 4 * 1024 + 8 * 1024 + 4096) * 5
    assert sum(evaluated) == 2 * per_image
    evaluated.clear()
    kmeans_colors(images, 5, generator=seeded(), narrow_after=None)
    assert sum(evaluated) == 2 * (10 * 4 * 1024 + 4 * 1024 + 4096) * 5 == 2 * 2 * per_image


def test_k_max_changes_only_the_palette_size(blurred: torch.Tensor) -> None:
    images, k = blurred[:3], torch.tensor([2, 4, 3])
    labels, colors = kmeans_colors(images, k, generator=seeded())
    wide_labels, wide_colors = kmeans_colors(images, k, generator=seeded(), k_max=5)
    assert torch.equal(labels, wide_labels) and wide_colors.shape == (3, 5, 3)
    assert torch.equal(colors, wide_colors[:, :4])
