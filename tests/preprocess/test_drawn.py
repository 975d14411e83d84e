"""Drawn-line ops: stroke widths against OpenCV, thinning against scikit-image, dark contours,
the training-time restyling and the inference-time edge styles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import skeletonize

from pirec_lightning.preprocess.confusion import ConfusionConfig, Preprocessor
from pirec_lightning.preprocess.drawn import (
    ThinEdges,
    augment_drawn_edges,
    dark_contours,
    dilate_edges,
    disk,
    drawn_lines,
    prepare_edges,
    thin_edges,
    use_line_art,
)


def _curves(batch: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    """(B, 1, size, size) 1-pixel random polylines (what Canny gives), drawn with OpenCV."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(batch):
        canvas = np.zeros((size, size), np.uint8)
        points = rng.integers(6, size - 6, (5, 2)).astype(np.int32)
        cv2.polylines(canvas, [points], False, 1, thickness=1)
        maps.append(canvas)
    return torch.from_numpy(np.stack(maps)).float()[:, None]


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_dilation_matches_opencv_disk(radius: int) -> None:
    edges = _curves()
    ours = dilate_edges(edges, radius)
    kernel = disk(radius).numpy().astype(np.uint8)
    for i in range(len(edges)):
        reference = cv2.dilate(edges[i, 0].numpy().astype(np.uint8), kernel, borderValue=0)
        np.testing.assert_array_equal(ours[i, 0].numpy(), reference.astype(np.float32))


def test_dilation_widths_per_sample() -> None:
    line = torch.zeros(3, 1, 20, 20)
    line[..., 10] = 1  # a vertical 1-pixel line
    widened = dilate_edges(line, torch.tensor([0, 1, 2]))
    assert [int(widened[i, 0, 10].sum()) for i in range(3)] == [1, 3, 5]
    assert set(widened.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="radius must be >= 0"):
        dilate_edges(line, -1)


def test_thinning_agrees_with_skimage_skeletonize() -> None:
    """Every thinned pixel lies within 1 pixel of scikit-image's skeleton and nearly every
    skeleton pixel within 1 pixel of ours; components are kept; the result is a subset."""
    strokes = dilate_edges(_curves(4, 64, seed=1), 2)
    ours = thin_edges(strokes)
    assert torch.equal(ThinEdges()(strokes), ours)
    assert bool((ours <= strokes).all())
    near = np.ones((3, 3), bool)
    for i in range(len(strokes)):
        mine = ours[i, 0].numpy().astype(bool)
        reference = skeletonize(strokes[i, 0].numpy().astype(bool))
        precision = (mine & ndimage.binary_dilation(reference, near)).sum() / mine.sum()
        recall = (reference & ndimage.binary_dilation(mine, near)).sum() / reference.sum()
        assert precision >= 0.98 and recall >= 0.9, (precision, recall)
        components = ndimage.label(mine, np.ones((3, 3)))[1]
        assert components == ndimage.label(strokes[i, 0].numpy(), np.ones((3, 3)))[1]
        assert mine.sum() < 0.5 * strokes[i, 0].sum().item()


def test_thinning_a_brush_stroke_gives_back_the_line() -> None:
    lines = _curves(3, 48, seed=2)
    thinned = thin_edges(dilate_edges(lines, 2))
    near = ndimage.binary_dilation(lines[:, 0].numpy().astype(bool), np.ones((1, 3, 3), bool))
    assert (thinned[:, 0].numpy().astype(bool) <= near).all()


def test_dark_contours_one_line_per_stroke_and_blob_outline() -> None:
    image = torch.ones(1, 3, 32, 32)
    image[..., 5:8, 4:28] = 0.0  # a 3-pixel dark stroke: Canny would give two lines
    image[..., 14:28, 8:22] = 0.1  # a dark blob: a person outlines it
    lines = dark_contours(image)
    assert set(lines.unique().tolist()) == {0.0, 1.0}
    stroke = lines[0, 0, 4:9, 10:22]
    assert stroke.sum(0).eq(1).all() and stroke[2].sum() == 12  # the centre row (6) only
    blob = lines[0, 0, 14:28, 8:22]
    assert blob[7, 7] == 0 and blob[:, 0].sum() >= 10  # outlined, not filled
    assert dark_contours(torch.ones(1, 3, 16, 16)).sum() == 0


def test_drawn_lines_stroke_width_and_regions() -> None:
    image = torch.ones(1, 3, 32, 32)
    image[..., 10:13, 4:28] = 0.0
    lines = drawn_lines(image, stroke_radius=1)
    assert int(lines[0, 0, :, 16].sum()) == 3  # a 3-pixel brush stroke
    assert int(drawn_lines(image, stroke_radius=2)[0, 0, :, 16].sum()) == 5
    regions = torch.ones(1, 3, 32, 32)
    regions[..., :, 20:] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    with_regions = drawn_lines(image, stroke_radius=0, regions=regions)
    assert with_regions[0, 0, 25, 19:21].sum() == 1  # one line on the colour boundary


def test_augmentation_off_on_and_widths() -> None:
    edges, images = _curves(4), torch.rand(4, 3, 48, 48)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_drawn_edges(edges, images, probability=0.0, generator=g), edges)
    wide = augment_drawn_edges(
        edges, images, probability=1.0, dilation=(2, 2), thinning=0.0, contours=0.0, generator=g
    )
    assert torch.equal(wide, dilate_edges(edges, 2))
    thin = augment_drawn_edges(
        edges, images, probability=1.0, dilation=(1, 2), thinning=1.0, contours=0.0, generator=g
    )
    assert set(thin.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(thin_edges(thin), thin)


def test_preprocessor_restyles_training_edges_only() -> None:
    images = torch.rand(6, 3, 32, 32)
    plain = Preprocessor(32, {"edge_dropout": 0.0}, seed=3)
    drawn = Preprocessor(
        32,
        {"edge_dropout": 0.0, "drawn_edges": 1.0, "edge_thinning": 0.0, "drawn_outlines": 0.0},
        seed=3,
    )
    fit_plain = plain(images, "fit", ("edge",))["edge"]
    fit_drawn = drawn(images, "fit", ("edge",))["edge"]
    assert set(fit_drawn.unique().tolist()) <= {0.0, 1.0}
    assert bool((fit_drawn >= fit_plain).all()) and fit_drawn.sum() > fit_plain.sum()
    val_plain = plain(images, "validate", ("edge",))["edge"]
    assert torch.equal(drawn(images, "validate", ("edge",))["edge"], val_plain)
    with pytest.raises(ValueError, match="drawn_edges"):
        ConfusionConfig(drawn_edges=1.5)
    with pytest.raises(ValueError, match="edge_dilation"):
        ConfusionConfig(edge_dilation=(2, 1))


def _bands() -> torch.Tensor:
    """(2, 3, 32, 32): white | yellow | white | a 3-px black stroke | white, vertical bands."""
    image = torch.ones(2, 3, 32, 32)
    image[:, 2, :, 8:16] = 0  # yellow
    image[:, :, :, 22:25] = 0  # black stroke
    return image


def test_outline_restyling_traces_the_picture() -> None:
    """drawn_outlines = 1 replaces Canny by the picture's outlines: one line per colour
    boundary and the stroke's centre line, as drawn_lines of the picture itself."""
    images = _bands()
    canny = Preprocessor(32, {"edge_dropout": 0.0}, seed=0)(images, "fit", ("edge",))["edge"]
    traced = augment_drawn_edges(
        canny, images, probability=1.0, dilation=(0, 0), thinning=0.0, outlines=1.0
    )
    expected = drawn_lines(images, stroke_radius=0, regions=images)
    torch.testing.assert_close(traced, expected)
    assert not torch.equal(traced, canny)
    columns = set(traced[0, 0, 16].nonzero().flatten().tolist())  # a row away from the borders
    assert {7, 15, 23} <= columns  # the yellow band's two sides, the stroke's centre line
    assert not columns & set(range(9, 15))  # nothing inside the flat band
    kept = augment_drawn_edges(canny, images, probability=1.0, dilation=(0, 0), thinning=0.0)
    assert bool((kept >= canny).all())  # outlines = 0: Canny kept, contours added


def test_prepare_edges_styles() -> None:
    strokes = dilate_edges(_curves(2), 1)
    assert torch.equal(prepare_edges(strokes, "canny"), strokes)
    assert torch.equal(prepare_edges(strokes, "drawn"), thin_edges(strokes))
    with pytest.raises(ValueError, match="canny, drawn"):
        prepare_edges(strokes, "pencil")


def test_use_line_art_replaces_only_items_that_have_it():
    edges = torch.zeros(4, 1, 32, 32)
    art = torch.zeros(4, 1, 32, 32)
    art[..., 10:13, 4:28] = 1  # a 3-pixel stroke
    available = torch.tensor([True, True, False, True])
    out = use_line_art(edges, art, available, probability=1.0, dilation=(0, 0), thinning=0.0)
    assert torch.equal(out[[0, 1, 3]], art[[0, 1, 3]])
    assert out[2].sum() == 0  # no line art: its own edges
    thinned = use_line_art(edges, art, available, probability=1.0, dilation=(0, 0), thinning=1.0)
    assert thinned[0, 0, :, 15].sum() == 1  # one pixel across the stroke
    assert torch.equal(thinned[0], thin_edges(art[:1])[0])
    never = use_line_art(edges, art, available, probability=0.0)
    assert torch.equal(never, edges)


def test_use_line_art_widens_by_the_drawn_radius():
    edges = torch.zeros(64, 1, 16, 16)
    art = torch.zeros(64, 1, 16, 16)
    art[..., 8, 2:14] = 1
    out = use_line_art(
        edges,
        art,
        torch.ones(64, dtype=torch.bool),
        probability=1.0,
        dilation=(0, 2),
        thinning=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    widths = out[:, 0, :, 8].sum(1)
    assert set(widths.tolist()) == {1.0, 3.0, 5.0}  # radius 0, 1, 2 all drawn
    assert torch.equal(out, dilate_edges(art, ((widths - 1) / 2).long()))
