"""Every input kind becomes the same batch; edge files are read as PI-REC reads them."""

from __future__ import annotations

from pathlib import Path

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
    # forcing the wrong polarity reads the background as lines, and says so
    with pytest.warns(UserWarning, match=r"drawn.png marks 9\d % of the image as edges"):
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


# --------------------------------------------------------------- issue 20: edge images people hand in
SHARED = Path(__file__).resolve().parents[3] / "shared"
EXAMPLES = SHARED / "data" / "pirec_examples"


def some_lines() -> np.ndarray:
    """A 128 x 128 edge map with a few 1-pixel lines (bool)."""
    lines = np.zeros((128, 128), bool)
    lines[20, 10:118] = lines[64, 5:123] = lines[100, 10:118] = True
    lines[10:118, 30] = lines[10:118, 90] = True
    lines[30:60, 60] = True
    return lines


def test_transparent_background_is_background(tmp_path):
    lines = some_lines()
    for colour in (255, 0):  # white lines, and black lines, on a transparent background
        rgba = np.zeros((128, 128, 4), np.uint8)
        rgba[..., :3] = 255 - colour  # the invisible background has the other colour
        rgba[lines] = (colour, colour, colour, 255)
        path = tmp_path / f"lines_{colour}.png"
        Image.fromarray(rgba, mode="RGBA").save(path)
        edge = to_edge_batch(path)[0, 0].numpy().astype(bool)
        np.testing.assert_array_equal(edge, lines)


def test_edges_stored_as_0_and_1(tmp_path):
    lines = some_lines()
    path = tmp_path / "binary_e.png"
    Image.fromarray(lines.astype(np.uint8), mode="L").save(path)  # values 0 and 1
    for value in (path, lines.astype(np.uint8), torch.from_numpy(lines.astype(np.uint8))):
        np.testing.assert_array_equal(to_edge_batch(value)[0, 0].numpy().astype(bool), lines)


def test_empty_or_crowded_edge_maps_warn_naming_the_file(tmp_path, recwarn):
    empty = tmp_path / "empty_e.png"
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(empty)
    crowded = tmp_path / "photo_e.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32), np.uint8)).save(crowded)
    with pytest.warns(UserWarning, match="empty_e.png.* no edge pixels"):
        to_edge_batch(empty)
    with pytest.warns(UserWarning, match=r"photo_e.png.* \d+ % of the image"):
        to_edge_batch(crowded)
    recwarn.clear()
    to_edge_batch(some_lines().astype(np.uint8) * 255)  # 4 % of the image: no warning
    assert not [w for w in recwarn if "edge" in str(w.message)]


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="needs ../shared/data/pirec_examples")
def test_pirec_example_edges_read_exactly_as_pirec_reads_them(recwarn):
    files = sorted(EXAMPLES.rglob("*_e.png")) + sorted(EXAMPLES.rglob("*_edge.png"))
    assert len(files) >= 13
    for path in files:
        reference = np.asarray(Image.open(path).convert("L")) > 59  # PI-REC's own reading
        np.testing.assert_array_equal(to_edge_batch(path)[0, 0].numpy().astype(bool), reference)
    assert not [w for w in recwarn if "edge" in str(w.message)]


def test_a_3d_array_is_a_batch_unless_its_last_dim_is_channels():
    batch = np.stack([some_lines(), ~some_lines()]).astype(np.uint8) * 255  # (2, 128, 128)
    edges = to_edge_batch(batch)
    assert edges.shape == (2, 1, 128, 128)
    torch.testing.assert_close(edges[0], edges[1])  # the second is line art: same lines
    assert to_edge_batch(batch[0][..., None]).shape == (1, 1, 128, 128)  # (H, W, 1)
    assert to_image_batch(np.zeros((20, 28, 3), np.uint8)).shape == (1, 3, 20, 28)  # (H, W, 3)
    with pytest.raises(ValueError, match=r"got \(1, 2, 3, 4, 5\)"):
        to_edge_batch(np.zeros((1, 2, 3, 4, 5)))
