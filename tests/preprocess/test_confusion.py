"""Hyperparameter confusion draws and the Preprocessor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pirec_lightning.preprocess.confusion import (
    ConfusionConfig,
    Preprocessor,
    evaluation_confusion,
    sample_confusion,
    scale_kernel,
)
from pirec_lightning.preprocess.edges import canny_edges


def _gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _images(batch: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images (B, 3, size, size) in [0, 1] with plenty of edges."""
    coarse = torch.rand(batch, 3, 6, 6, generator=_gen(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _odd_range(lo: int, hi: int) -> set[int]:
    return set(range(lo, hi + 1, 2))


@pytest.mark.parametrize(
    ("size", "sigma", "median", "second"),
    [
        (128, (2.5, 5.4), _odd_range(15, 35), {1, 3, 5}),
        (64, (1.25, 2.7), _odd_range(7, 17), {1, 3}),
        (256, (5.0, 10.8), _odd_range(31, 71), {3, 7, 11}),
    ],
)
def test_sampled_ranges(size, sigma, median, second):
    draws = sample_confusion(2000, ConfusionConfig(), size, generator=_gen())
    assert all(v.shape == (2000,) for v in draws.values())
    s = draws["canny_sigma"]
    assert s.dtype == torch.float32 and sigma[0] <= s.min() and s.max() <= sigma[1]
    assert s.max() - s.min() > 0.9 * (sigma[1] - sigma[0])
    assert set(draws["median_kernel"].tolist()) <= median
    assert {min(median), max(median)} <= set(draws["median_kernel"].tolist())
    assert set(draws["k"].tolist()) == {2, 3, 4, 5}
    assert set(draws["second_median_kernel"].tolist()) == second


def test_sampling_is_deterministic():
    a = sample_confusion(16, ConfusionConfig(), 128, generator=_gen(1))
    b = sample_confusion(16, ConfusionConfig(), 128, generator=_gen(1))
    c = sample_confusion(16, ConfusionConfig(), 128, generator=_gen(2))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["canny_sigma"], c["canny_sigma"])


def test_scale_kernel_and_evaluation_values():
    assert scale_kernel(torch.tensor([1, 3, 5, 15, 25, 35]), 1.0).tolist() == [1, 3, 5, 15, 25, 35]
    assert scale_kernel(torch.tensor([1, 3, 15, 35]), 2.0).tolist() == [3, 7, 31, 71]
    values = evaluation_confusion(3, ConfusionConfig(), 64)
    assert values["canny_sigma"].tolist() == [2.0] * 3
    assert values["median_kernel"].tolist() == [13] * 3
    assert values["k"].tolist() == [4] * 3
    assert values["second_median_kernel"].tolist() == [1] * 3


def test_config_validation_and_mappings():
    assert ConfusionConfig.from_any({"median_kernel": [11, 21]}).median_kernel == (11, 21)
    assert ConfusionConfig.from_any(None) == ConfusionConfig()
    with pytest.raises(ValueError, match="odd"):
        ConfusionConfig(median_kernel=(14, 35))
    with pytest.raises(ValueError, match="lo <= hi"):
        ConfusionConfig(canny_sigma=(5.0, 2.0))
    with pytest.raises(ValueError, match="edge_dropout"):
        ConfusionConfig(edge_dropout=1.5)
    with pytest.raises(ValueError, match="unknown confusion fields"):
        ConfusionConfig.from_any({"sigma": (1, 2)})


def test_outputs_shapes_ranges_and_subsets():
    images = _images()
    pre = Preprocessor(64)
    out = pre(images, generator=_gen())
    assert set(out) == {"image", "edge", "mask", "color_domain"} and out["image"] is images
    assert out["edge"].shape == out["mask"].shape == (4, 1, 64, 64)
    assert out["color_domain"].shape == (4, 3, 64, 64)
    for name in ("edge", "mask"):
        assert set(out[name].unique().tolist()) <= {0.0, 1.0}
    assert out["color_domain"].min() >= 0.0 and out["color_domain"].max() <= 1.0
    assert all(v.dtype == torch.float32 for v in out.values())
    # Each output has its own random stream: asking for fewer does not change the others.
    edge_only = pre(images, outputs=("edge",), generator=_gen())
    assert set(edge_only) == {"image", "edge"} and torch.equal(edge_only["edge"], out["edge"])
    mask_only = pre(images, outputs="mask", generator=_gen())
    assert torch.equal(mask_only["mask"], out["mask"])


def test_fit_is_random_per_call_but_seeded():
    images = _images()
    pre = Preprocessor(64, seed=3)
    first, second = pre(images), pre(images)
    assert not torch.equal(first["mask"], second["mask"])
    again = Preprocessor(64, seed=3)(images)
    assert all(torch.equal(first[key], again[key]) for key in first)


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluation_stages_are_fixed_and_repeatable(stage):
    images = _images()
    pre = Preprocessor(64)
    a = pre(images, stage, generator=_gen(7))
    b = pre(images, stage, generator=_gen(7))
    assert all(torch.equal(a[key], b[key]) for key in a)
    # Fixed evaluation sigma (4.0 at 128 px -> 2.0 at 64 px) and no dropout.
    assert torch.equal(a["edge"], canny_edges(images, 2.0))


def test_fit_dropout_rate_and_disabled_confusion():
    images = _images(8, 64)
    reference = canny_edges(images, 2.0)  # fixed values when confusion is disabled
    pre = Preprocessor(64, enabled=False)
    kept = torch.stack([pre(images, outputs=("edge",))["edge"] for _ in range(4)])
    assert (kept <= reference).all()
    dropped = 1.0 - kept.sum().item() / (4 * reference.sum().item())
    assert reference.sum() > 2000 and abs(dropped - 0.08) < 0.015


def test_confusion_changes_edges_per_sample():
    images = _images(1).expand(16, -1, -1, -1)
    edges = Preprocessor(64, {"edge_dropout": 0.0})(images, outputs=("edge",))["edge"]
    assert len({tuple(e.flatten().tolist()) for e in edges}) > 4


def test_errors():
    pre = Preprocessor(64)
    with pytest.raises(ValueError, match="unknown stage 'train'.*fit, validate, test, predict"):
        pre(_images(), "train")
    with pytest.raises(ValueError, match="unknown outputs.*edge, mask, color_domain"):
        pre(_images(), outputs=("edges",))
    with pytest.raises(ValueError, match="image_size=64"):
        pre(_images(size=32))
    with pytest.raises(ValueError, match="3 channels"):
        pre(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match="image_size"):
        Preprocessor(0)


def test_figure():
    grid = Preprocessor(32).figure(_images(2, 32), draws=2)
    assert grid.shape == (3, 2 * 34 + 2, 5 * 34 + 2)
    assert grid.min() >= 0.0 and grid.max() <= 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_outputs():
    images = _images(8, 128).cuda()
    pre = Preprocessor(128)
    out = pre(images)
    assert all(v.is_cuda for v in out.values())
    a = pre(images, "validate", generator=_gen(1, "cuda"))
    b = pre(images, "validate", generator=_gen(1, "cuda"))
    assert all(torch.equal(a[key], b[key]) for key in a)
