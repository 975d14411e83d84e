"""Tests for pirec_lightning.preprocess.color: color_domain and ColorDomain."""

from __future__ import annotations

import doctest

import pytest
import torch

from pirec_lightning.preprocess import color
from pirec_lightning.preprocess.color import ColorDomain, color_domain
from pirec_lightning.preprocess.kmeans import kmeans_quantize
from pirec_lightning.preprocess.median import median_blur


def seeded(device: torch.device | str = "cpu", seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def test_smoke(device: torch.device, dtype: torch.dtype) -> None:
    images = torch.rand(2, 3, 20, 24, device=device, dtype=dtype)
    out = color_domain(images, 5, 3, 3, generator=seeded(device))
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert out.min() >= 0 and out.max() <= 1
    # The second median mixes channels of different clusters, but keeps each channel's values.
    for image in out:
        assert all(len(channel.unique()) <= 3 for channel in image)


@pytest.mark.parametrize("batch", [0, 1, 2])
def test_cardinality(batch: int, device: torch.device) -> None:
    images = torch.rand(batch, 3, 10, 9, device=device)
    assert color_domain(images, 3, 2, 3).shape == (batch, 3, 10, 9)
    per_sample = torch.full((batch,), 3, device=device)
    assert color_domain(images, per_sample, per_sample, per_sample).shape == (batch, 3, 10, 9)


def test_exceptions() -> None:
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        color_domain(images[0], 3, 2, 3)
    with pytest.raises(ValueError, match="3 channels"):
        color_domain(images[:, :2], 3, 2, 3)
    with pytest.raises(TypeError, match=r"floating-point tensor in \[0, 1\].*convert"):
        color_domain((images * 255).byte(), 3, 2, 3)
    with pytest.raises(ValueError, match="median_kernel must be odd, got 4"):
        color_domain(images, 4, 2, 3)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        color_domain(images, 3, 0, 3)
    with pytest.raises(ValueError, match="second_median_kernel must be odd, got 2"):
        color_domain(images, 3, 2, 2)
    with pytest.raises(ValueError, match="second_median_kernel must be >= 1, got -1"):
        color_domain(images, 3, 2, -1)
    with pytest.raises(
        ValueError, match=r"median_kernel must be an int or a tensor of shape \(2,\)"
    ):
        color_domain(images, torch.tensor([3, 5, 7]), 2, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ColorDomain(3, 0, 3)


def test_module_equals_function(device: torch.device) -> None:
    images = torch.rand(2, 3, 16, 16, device=device)
    module = ColorDomain(5, 3, 3)
    expected = color_domain(images, 5, 3, 3, generator=seeded(device))
    assert torch.equal(module(images, generator=seeded(device)), expected)
    assert "second_median_kernel=3" in repr(module)


@pytest.mark.parametrize("second", [1, 3, 5])
def test_equals_median_kmeans_median(
    real_images: torch.Tensor, second: int, device: torch.device, reference_median
) -> None:
    """The pipeline of the public pieces, with the exact float median as the second step."""
    images = real_images[[0, 4, 7]].to(device)
    out = color_domain(images, 21, 4, second, generator=seeded(device))
    quantized = kmeans_quantize(median_blur(images, 21), 4, generator=seeded(device))
    expected = reference_median(quantized.cpu(), second)
    assert torch.equal(out.cpu(), expected)


def test_per_sample_parameters(real_images: torch.Tensor, device: torch.device) -> None:
    """Sample b with its own parameters gets what a whole-batch run with them gives it."""
    images = real_images[[0, 2, 3, 6], :, :64, :64].to(device)
    medians, ks, seconds = [15, 35, 1, 21], [2, 5, 3, 1], [5, 1, 3, 3]
    out = color_domain(
        images,
        torch.tensor(medians, device=device),
        torch.tensor(ks, device=device),
        torch.tensor(seconds, device=device),
        generator=seeded(device),
    )
    for i, params in enumerate(zip(medians, ks, seconds)):
        uniform = color_domain(images, *params, generator=seeded(device))
        assert torch.equal(out[i], uniform[i]), params


def test_deterministic_with_generator(real_images: torch.Tensor, device: torch.device) -> None:
    images = real_images[:2].to(device)
    first = color_domain(images, 15, 3, 3, generator=seeded(device, 3))
    assert torch.equal(first, color_domain(images, 15, 3, 3, generator=seeded(device, 3)))


def test_docstring_examples() -> None:
    assert doctest.testmod(color).failed == 0
