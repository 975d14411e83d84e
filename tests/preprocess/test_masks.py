"""Free-form hole masks and edge dropout."""

from __future__ import annotations

import pytest
import torch

from pirec_lightning.preprocess.masks import (
    EdgeDropout,
    FreeFormMask,
    edge_dropout,
    free_form_masks,
)


def _gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize(
    ("height", "width", "coverage"), [(128, 128, (0.1, 0.5)), (64, 96, (0.2, 0.3))]
)
def test_coverage_within_range(height, width, coverage):
    masks = free_form_masks(64, height, width, coverage=coverage, generator=_gen())
    assert masks.shape == (64, 1, height, width) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    fraction = masks.mean((1, 2, 3))
    assert (fraction >= coverage[0]).all() and (fraction <= coverage[1]).all(), fraction
    # Spread over the range rather than piled up at one end.
    assert fraction.std() > 0.1 * (coverage[1] - coverage[0])


def test_masks_are_strokes_not_noise():
    masks = free_form_masks(8, 128, 128, generator=_gen())
    # Brush strokes are thick: almost every hole pixel has a hole pixel on each side in some axis.
    inside = masks[..., 1:-1, 1:-1]
    horizontal = masks[..., 1:-1, :-2] * masks[..., 1:-1, 2:]
    vertical = masks[..., :-2, 1:-1] * masks[..., 2:, 1:-1]
    thick = (inside * torch.maximum(horizontal, vertical)).sum() / inside.sum()
    assert thick > 0.95
    assert not torch.equal(masks[0], masks[1])


def test_deterministic_with_seeded_generator():
    a = free_form_masks(4, 64, 64, generator=_gen(3))
    b = free_form_masks(4, 64, 64, generator=_gen(3))
    c = free_form_masks(4, 64, 64, generator=_gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("batch", [0, 1, 2])
def test_cardinality_and_module(batch):
    images = torch.rand(batch, 3, 32, 48)
    masks = FreeFormMask((0.1, 0.5))(images, generator=_gen())
    assert masks.shape == (batch, 1, 32, 48)
    assert torch.equal(masks, free_form_masks(batch, 32, 48, generator=_gen()))


def test_mask_errors():
    with pytest.raises(ValueError, match="coverage"):
        free_form_masks(2, 32, 32, coverage=(0.6, 0.4))
    with pytest.raises(ValueError, match="coverage"):
        free_form_masks(2, 32, 32, coverage=(0.1, 1.5))
    with pytest.raises(ValueError, match="batch_size"):
        free_form_masks(-1, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        FreeFormMask()(torch.rand(3, 32, 32))


def test_edge_dropout_rate():
    edges = torch.ones(4, 1, 128, 128)  # 65,536 edge pixels: std of the rate ~0.001
    dropped = 1.0 - edge_dropout(edges, 0.08, generator=_gen()).mean().item()
    assert abs(dropped - 0.08) < 0.005


def test_edge_dropout_only_removes_edges():
    edges = (torch.rand(2, 1, 32, 32, generator=_gen(1)) > 0.7).float()
    out = edge_dropout(edges, 0.5, generator=_gen())
    assert (out <= edges).all() and out.sum() < edges.sum()
    assert torch.equal(edge_dropout(edges, 0.0), edges)
    assert edge_dropout(edges, 1.0).sum() == 0
    assert torch.equal(
        EdgeDropout(0.3)(edges, generator=_gen(2)), edge_dropout(edges, 0.3, generator=_gen(2))
    )


def test_edge_dropout_errors():
    with pytest.raises(ValueError, match="p must be"):
        edge_dropout(torch.ones(1, 1, 4, 4), 1.5)
    with pytest.raises(ValueError, match="p must be"):
        EdgeDropout(-0.1)
    with pytest.raises(TypeError, match="float"):
        edge_dropout(torch.ones(1, 1, 4, 4, dtype=torch.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_masks():
    masks = free_form_masks(64, 128, 128, generator=_gen(0, "cuda"))
    assert masks.is_cuda
    assert torch.equal(masks, free_form_masks(64, 128, 128, generator=_gen(0, "cuda")))
    fraction = masks.mean((1, 2, 3))
    assert (fraction >= 0.1).all() and (fraction <= 0.5).all()
