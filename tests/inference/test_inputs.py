"""Every input kind becomes the same batch; edge files are read as PI-REC reads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pirec_lightning.inference.inputs import (
    binarize_edges,
    to_edge_batch,
    to_image_batch,
    to_output,
)


@pytest.fixture
def edge_png(tmp_path):
    """A PI-REC-style edge file: mode L, white lines on black, grey anti-aliasing around them."""
    array = np.zeros((30, 42), np.uint8)
    array[10, 5:35] = 255
    array[11, 5:35] = 60  # just above the threshold: an edge
    array[12, 5:35] = 59  # at the threshold: not an edge
    array[5:25, 20] = 200
    path = tmp_path / "3_e.png"
    Image.fromarray(array, mode="L").save(path)
    return path, array


def test_edge_file_is_binarized_above_59(edge_png):
    path, array = edge_png
    edge = to_edge_batch(path)
    assert edge.shape == (1, 1, 30, 42) and edge.dtype == torch.float32
    np.testing.assert_array_equal(edge[0, 0].numpy(), (array > 59).astype(np.float32))


def test_polarity_auto_detects_black_on_white_line_art(edge_png, tmp_path):
    path, array = edge_png
    inverted = tmp_path / "drawn.png"
    Image.fromarray(255 - array, mode="L").convert("RGB").save(inverted)  # line art, saved RGB
    expected = to_edge_batch(path, "white-on-black")
    torch.testing.assert_close(to_edge_batch(inverted), expected)
    torch.testing.assert_close(to_edge_batch(inverted, "black-on-white"), expected)
    torch.testing.assert_close(to_edge_batch(path, "auto"), expected)
    # forcing the wrong polarity reads the background as lines
    assert to_edge_batch(inverted, "white-on-black").mean() > 0.9
    with pytest.raises(ValueError, match="unknown edge_polarity 'sideways'"):
        binarize_edges(expected, "sideways")


def test_polarity_is_decided_per_image():
    lines = torch.zeros(2, 1, 8, 8)
    lines[:, :, 4] = 1
    lines[1] = 1 - lines[1]  # second image: black line on white
    out = binarize_edges(lines)
    torch.testing.assert_close(out[0], out[1])


def test_every_input_kind_gives_the_same_batch(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    path = tmp_path / "c.png"
    Image.fromarray(rgb).save(path)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    for value in (
        path,
        str(path),
        Image.open(path),
        rgb,
        rgb.astype(np.float32) / 255,
        rgb[None],
        expected,
        expected[0],
        (expected * 255).round().to(torch.uint8),
    ):
        torch.testing.assert_close(to_image_batch(value), expected, atol=1e-6, rtol=0)
    assert to_image_batch([path, rgb]).shape == (2, 3, 20, 28)
    assert to_image_batch(rgb[..., 0]).shape == (1, 3, 20, 28)  # grey expands to RGB


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    assert to_image_batch(tmp_path / "t.png").min() == 1.0


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file does not exist"):
        to_image_batch(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="must share a size"):
        to_image_batch([np.zeros((4, 4, 3)), np.zeros((8, 8, 3))])
    with pytest.raises(TypeError, match="images must be"):
        to_image_batch(3)
    with pytest.raises(ValueError, match="int64"):
        to_image_batch(torch.zeros(1, 3, 4, 4, dtype=torch.int64))


def test_outputs():
    images = torch.rand(2, 3, 6, 10)
    assert to_output(images, "pt") is images
    assert to_output(images, "np").shape == (2, 6, 10, 3)
    pils = to_output(images, "pil")
    assert len(pils) == 2 and pils[0].size == (10, 6) and pils[0].mode == "RGB"
    with pytest.raises(ValueError, match="unknown output_type"):
        to_output(images, "jpeg")
