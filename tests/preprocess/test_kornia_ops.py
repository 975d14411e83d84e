"""The Kornia backend (data.preprocess_backend=kornia) on the CPU: shapes, ranges, references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.preprocess import Preprocessor
from pirec_lightning.preprocess.kornia_ops import (
    kornia_canny_edges,
    kornia_color_domain,
    kornia_kmeans,
    kornia_median_blur,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Four 8-bit-valued photos-like images: smooth shapes plus noise."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 40), indexing="ij")
    base = torch.stack([(x > 0.4).float(), ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1).float(), y])
    noisy = base.unsqueeze(0) * 0.7 + 0.3 * torch.rand(4, 3, 40, 40, generator=g)
    return (noisy * 255).round() / 255


def test_median_equals_opencv(images):
    kernels = torch.tensor([3, 5, 7, 9])
    ours = kornia_median_blur(images, kernels)
    for i, k in enumerate(kernels.tolist()):
        planes = (images[i] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        reference = cv2.medianBlur(np.ascontiguousarray(planes), k)
        assert np.array_equal((ours[i] * 255).round().to(torch.uint8).permute(1, 2, 0), reference)


def test_canny_agrees_with_scikit_image(images):
    from skimage.color import rgb2gray
    from skimage.feature import canny

    sigma = torch.tensor([1.0, 1.5, 2.0, 2.5])
    edges = kornia_canny_edges(images, sigma)
    assert edges.shape == (4, 1, 40, 40)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    for i in range(4):
        reference = canny(rgb2gray(images[i].permute(1, 2, 0).numpy()), sigma=float(sigma[i]))
        ours = edges[i, 0].bool().numpy()
        agree = (ours & reference).sum() * 2 / max(ours.sum() + reference.sum(), 1)
        assert agree > 0.5, f"image {i}: Dice {agree:.2f} with skimage.feature.canny"


def test_kmeans_paints_at_most_k_colors(images):
    out = kornia_kmeans(images, torch.tensor([2, 3, 4, 5]), torch.Generator().manual_seed(0))
    for i, k in enumerate([2, 3, 4, 5]):
        assert len(out[i].reshape(3, -1).T.unique(dim=0)) <= k
    assert out.min() >= 0 and out.max() <= 1


def test_kmeans_leaves_the_global_random_state_alone(images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    kornia_kmeans(images, 3, torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)


def test_color_domain_shape_range_and_colors(images):
    out = kornia_color_domain(images, torch.tensor([5, 7, 5, 9]), 3, torch.tensor([1, 3, 5, 3]))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1


def test_preprocessor_and_datamodule_run_the_kornia_backend():
    out = Preprocessor(32, backend="kornia")(torch.rand(2, 3, 32, 32))
    assert out["edge"].shape == (2, 1, 32, 32) and out["color_domain"].shape == (2, 3, 32, 32)
    dm = PIRECDataModule(
        image_size=32, batch_size=2, num_workers=0, limit=2, preprocess_backend="kornia"
    )
    dm.setup("fit")
    made = dm.make_inputs(next(iter(dm.train_dataloader())), "fit")
    assert made["color_domain"].shape == (2, 3, 32, 32) and made["edge"].sum() > 0


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="data.preprocess_backend must be one of engine, kornia"):
        Preprocessor(32, backend="opencv")
