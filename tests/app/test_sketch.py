"""Canvas values -> PI-REC inputs, and PI-REC's example pairs (sketch.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pirec_lightning.app.sketch import (
    COLOR_BACKGROUND,
    EDGE_BACKGROUND,
    blank_canvas,
    canvas_value,
    default_example_roots,
    find_examples,
    flatten_canvas,
    to_canvas_image,
)
from pirec_lightning.inference.inputs import to_edge_batch
from tests.conftest import SHARED


def stroke_layer(size: int, row: int) -> Image.Image:
    """A transparent layer with one opaque white horizontal line, as a canvas stroke."""
    layer = np.zeros((size, size, 4), np.uint8)
    layer[row, 4:-4] = 255
    return Image.fromarray(layer, "RGBA")


def test_strokes_are_drawn_over_the_background() -> None:
    value = {"background": blank_canvas(16, EDGE_BACKGROUND), "layers": [stroke_layer(16, 5)]}
    flat = flatten_canvas(value, EDGE_BACKGROUND, 16)
    assert flat.shape == (16, 16, 3) and flat.dtype == np.uint8
    assert (flat[5, 4:-4] == 255).all() and flat[6].max() == 0


def test_transparent_composite_takes_the_canvas_background() -> None:
    # an erased canvas hands over transparent pixels: they read as the canvas's own background
    composite = stroke_layer(16, 8)
    edge = flatten_canvas({"composite": composite, "background": None}, EDGE_BACKGROUND, 16)
    color = flatten_canvas({"composite": composite, "background": None}, COLOR_BACKGROUND, 16)
    assert edge[0, 0].tolist() == [0, 0, 0] and color[0, 0].tolist() == [255, 255, 255]
    assert edge[8, 8].tolist() == [255, 255, 255]


def test_a_thin_line_survives_resizing_to_the_model_size() -> None:
    big = blank_canvas(128, EDGE_BACKGROUND)
    big[60, 10:118] = 255  # one pixel wide at 128 px
    small = flatten_canvas(big, EDGE_BACKGROUND, 32)
    edge = to_edge_batch(small)  # the Reconstructor's own reading of an edge image
    assert edge.shape == (1, 1, 32, 32)
    assert edge[0, 0, 15, 4:28].all() and edge.sum() < 2 * 32


def test_an_empty_canvas_is_named() -> None:
    with pytest.raises(ValueError, match="canvas is empty"):
        flatten_canvas({"background": None, "layers": [], "composite": None}, EDGE_BACKGROUND, 8)


def test_file_paths_and_arrays_are_canvas_values(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "c.png")
    assert (flatten_canvas(str(tmp_path / "c.png"), COLOR_BACKGROUND, 8) == image).all()
    assert (flatten_canvas(canvas_value(image), COLOR_BACKGROUND, 8) == image).all()


def test_model_maps_become_canvas_images() -> None:
    edge = torch.zeros(1, 1, 4, 4)
    edge[..., 1, :] = 1
    shown = to_canvas_image(edge)
    assert shown.shape == (4, 4, 3) and (shown[1] == 255).all() and shown[0].max() == 0
    color = torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1).expand(3, 2, 2)
    assert to_canvas_image(color)[0, 0].tolist() == [255, 128, 0]


def test_examples_come_from_the_first_root_that_has_pairs(examples_dir: Path) -> None:
    pairs = find_examples([Path("/nonexistent"), examples_dir])
    assert [name for name, _, _ in pairs] == ["sketch/1", "sketch/2"]
    assert pairs[1][1].name == "2_edge.png" and pairs[1][2].name == "2_cd.png"
    assert find_examples([Path("/nonexistent")]) == []


def test_pirec_examples_are_found_when_shared_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = SHARED / "data" / "pirec_examples"
    if not folder.is_dir():
        pytest.skip(f"no PI-REC examples at {folder}")
    monkeypatch.setenv("PIREC_EXAMPLES_DIR", str(folder))
    assert default_example_roots()[0] == folder
    names = [name for name, _, _ in find_examples(default_example_roots())]
    assert "celeba/3" in names and "getchu/4" in names
