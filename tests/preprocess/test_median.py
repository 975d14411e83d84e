"""Tests for pirec_lightning.preprocess.median: median_blur, MedianBlur, median_levels."""

from __future__ import annotations

import doctest

import cv2
import numpy as np
import pytest
import torch

from pirec_lightning.preprocess import median
from pirec_lightning.preprocess.median import MedianBlur, median_blur, median_levels

METHODS = ["histogram", "radix", "opencv"]


def cv2_median(images: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``cv2.medianBlur`` of each image as uint8 HWC (PI-REC's call), back as (B, C, H, W)."""
    out = []
    for image in images.cpu():
        array = np.ascontiguousarray((image * 255).round().byte().permute(1, 2, 0).numpy())
        blurred = cv2.medianBlur(array, kernel_size)
        out.append(torch.from_numpy(blurred.reshape(array.shape)).permute(2, 0, 1))
    return torch.stack(out).float() / 255


@pytest.mark.parametrize("method", METHODS)
def test_smoke(method: str, device: torch.device, dtype: torch.dtype) -> None:
    images = torch.rand(2, 3, 9, 11, device=device, dtype=dtype)
    out = median_blur(images, 3, method=method)
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * 255, (out * 255).round())  # on the 8-bit grid


@pytest.mark.parametrize("batch", [0, 1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_cardinality(batch: int, method: str, device: torch.device) -> None:
    images = torch.rand(batch, 2, 6, 5, device=device)
    assert median_blur(images, 5, method=method).shape == (batch, 2, 6, 5)
    kernels = torch.full((batch,), 3, device=device)
    assert median_blur(images, kernels, method=method).shape == (batch, 2, 6, 5)


def test_exceptions() -> None:
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        median_blur(images[0], 3)
    with pytest.raises(TypeError, match=r"floating-point tensor in \[0, 1\].*convert"):
        median_blur((images * 255).byte(), 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        median_blur(images.numpy(), 3)
    with pytest.raises(ValueError, match="kernel_size must be odd, got 4"):
        median_blur(images, 4)
    with pytest.raises(ValueError, match="kernel_size must be >= 1, got -1"):
        median_blur(images, -1)
    with pytest.raises(ValueError, match=r"kernel_size must be odd, got \[3, 4\]"):
        median_blur(images, torch.tensor([3, 4]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        median_blur(images, torch.tensor([3, 3, 3]))
    with pytest.raises(TypeError, match="integer tensor"):
        median_blur(images, torch.tensor([3.0, 3.0]))
    with pytest.raises(ValueError, match="auto, histogram, radix, opencv.*'fast'"):
        median_blur(images, 3, method="fast")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        MedianBlur(2)


@pytest.mark.parametrize("method", METHODS)
def test_module_equals_function(method: str, device: torch.device) -> None:
    images = torch.rand(2, 3, 12, 12, device=device)
    blur = MedianBlur(5, method=method)
    assert torch.equal(blur(images), median_blur(images, 5, method=method))
    assert "kernel_size=5" in repr(blur)


@pytest.mark.parametrize("kernel_size", [3, 5, 15, 35])
def test_matches_opencv_on_real_images(
    real_images: torch.Tensor, kernel_size: int, device: torch.device
) -> None:
    images = real_images.to(device)
    expected = cv2_median(images, kernel_size)
    # The tensor methods are slow on a CPU: a photo and two emoji are enough for it.
    for method, some in [("opencv", slice(None)), ("histogram", [0, 3, 6]), ("radix", [0, 3])]:
        out = median_blur(images[some], kernel_size, method=method).cpu()
        assert (out - expected[some]).abs().max() <= 1 / 255 + 1e-6, method
        # In fact equal: both are exact medians of the same 8-bit values.
        assert torch.equal((out * 255).round(), (expected[some] * 255).round()), method


@pytest.mark.parametrize("method", METHODS)
def test_per_sample_kernel_equals_each_alone(
    real_images: torch.Tensor, method: str, device: torch.device
) -> None:
    images = real_images[[0, 3, 5, 7], :, 32:96, 32:96].to(device)
    sizes = [35, 1, 3, 15]
    out = median_blur(images, torch.tensor(sizes, device=device), method=method)
    for i, size in enumerate(sizes):
        assert torch.equal(out[i : i + 1], median_blur(images[i : i + 1], size, method=method))


def test_methods_agree_and_match_sorting(
    device: torch.device, dtype: torch.dtype, reference_median
) -> None:
    """Odd shapes, any channel count, windows larger than the image, k * k > 2048."""
    generator = torch.Generator().manual_seed(0)
    for channels, height, width, size in [
        (1, 7, 5, 3),
        (2, 4, 9, 15),
        (5, 13, 6, 7),
        (1, 40, 36, 47),
    ]:
        levels = torch.randint(0, 256, (3, channels, height, width), generator=generator)
        images = (levels / 255).to(device=device, dtype=dtype)
        expected = reference_median(images.cpu().double(), size)
        for method in METHODS:
            out = median_blur(images, size, method=method).cpu().double()
            assert torch.allclose(out, expected, atol=1e-6, rtol=0), (method, channels, size)


def test_quantizes_other_inputs_to_8_bits(device: torch.device, reference_median) -> None:
    images = torch.rand(2, 3, 16, 16, device=device)
    grid = (images * 255).round() / 255
    out = median_blur(images, 5, method="histogram")
    assert torch.equal(out, median_blur(grid, 5, method="histogram"))
    assert (out.cpu() - reference_median(images.cpu(), 5)).abs().max() <= 0.5 / 255 + 1e-6


def test_median_levels_beyond_8_bits(device: torch.device, reference_median) -> None:
    levels = torch.randint(0, 1000, (2, 2, 10, 12), generator=torch.Generator().manual_seed(1))
    radius = torch.tensor([2, 0])
    out = median_levels(levels.to(device), radius.to(device)).cpu()
    assert out.dtype == torch.int64
    assert torch.equal(out[0], reference_median(levels[:1].double(), 5)[0].long())
    assert torch.equal(out[1], levels[1])


def test_auto_without_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.rand(1, 3, 10, 10)
    expected = median_blur(images, 3, method="histogram")
    monkeypatch.setattr(median, "_cv2", lambda: None)
    assert torch.equal(median_blur(images, 3), expected)
    with pytest.raises(ImportError, match="opencv-python-headless"):
        median_blur(images, 3, method="opencv")


def test_docstring_examples() -> None:
    assert doctest.testmod(median).failed == 0


def test_radix_equals_opencv_with_per_sample_kernels_and_few_colors() -> None:
    """Radix selection on planes of very different diversity in one batch: noise (every level),
    a four-color image (few candidates per bit) and a constant plane."""
    from pirec_lightning.preprocess import median_radix

    generator = torch.Generator().manual_seed(2)
    noise = torch.randint(0, 256, (1, 3, 33, 29), generator=generator)
    few = torch.tensor([0, 17, 200, 255])[torch.randint(0, 4, (1, 3, 33, 29), generator=generator)]
    flat = torch.full((1, 3, 33, 29), 77)
    images = torch.cat([noise, few, flat]).float() / 255
    sizes = [7, 35, 5]
    out = median_blur(images, torch.tensor(sizes), method="radix")
    for i, size in enumerate(sizes):
        assert torch.equal(out[i : i + 1], cv2_median(images[i : i + 1], size)), size
    assert doctest.testmod(median_radix).failed == 0
