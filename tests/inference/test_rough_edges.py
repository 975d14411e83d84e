"""Issue 27, part A, below the CLI: the input size a model runs at, the ONNX input contract,
`.safetensors` checkpoints, evaluate's grid header, whole output files."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from pirec_lightning.errors import CheckpointError
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import evaluation_grid
from pirec_lightning.inference.export import export, run_exported
from pirec_lightning.inference.reconstructor import (
    MAX_PHOTO_SIDE,
    resize_output,
    run_shape,
    save_images,
)
from pirec_lightning.pretrained import model_file

from ..conftest import PROJECT_ROOT


@pytest.fixture
def refinement(tiny_run) -> Reconstructor:
    return Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu")


def line_pair(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Black-on-white line art with a few strokes, and a flat two-colour color domain."""
    g = torch.Generator().manual_seed(seed)
    edge = torch.ones(1, 1, size, size)
    for _ in range(4):
        row, col = torch.randint(2, size - 2, (2,), generator=g).tolist()
        edge[..., row, 2:-2] = 0
        edge[..., 2:-2, col] = 0
    color = torch.empty(1, 3, size, size)
    color[:, :, : size // 2] = torch.tensor([0.9, 0.6, 0.5]).view(1, 3, 1, 1)
    color[:, :, size // 2 :] = torch.tensor([0.2, 0.3, 0.7]).view(1, 3, 1, 1)
    return edge, color


def network_sizes(rec: Reconstructor) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    rec.generator.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    return seen


# ---------------------------------------------------------------------------------- input size
def test_run_shape_reduces_the_shorter_side_to_the_models_size():
    assert run_shape(512, 256, 128, "model") == (256, 128)
    assert run_shape(100, 90, 128, "model") == (100, 90)  # smaller inputs run as they are
    assert run_shape(512, 256, 128, "input") == (512, 256)
    assert run_shape(512, 512, None, "model") == (512, 512)  # a model of unknown size
    with pytest.raises(ValueError, match="run_size"):
        run_shape(64, 64, 32, "half")


def test_inputs_larger_than_the_model_run_at_its_size_by_default(refinement):
    assert refinement.image_size == 32 and refinement.run_size == "model"
    edge, color = line_pair(96)
    seen = network_sizes(refinement)
    output = refinement.reconstruct(edge, color)
    assert output.shape == (1, 3, 96, 96) and seen == [(32, 32)]
    # the same as running the model on the inputs reduced by hand, then resized back
    small_edge, small_color = refinement.prepare_inputs(edge, color)
    assert small_edge.shape[-2:] == (32, 32) and set(small_edge.unique().tolist()) <= {0.0, 1.0}
    expected = resize_output(refinement(small_edge, small_color), (96, 96))
    torch.testing.assert_close(output, expected)
    # --run-size input: at the input's own size
    refinement.run_size = "input"
    seen.clear()
    assert refinement.reconstruct(edge, color).shape == (1, 3, 96, 96) and seen == [(96, 96)]


def test_lines_keep_their_place_when_reduced(refinement):
    edge = torch.zeros(1, 1, 128, 128)
    edge[..., 64, 8:120] = 1  # a 1-px line at 128 px
    edge[..., 8:120, 20:24] = 1  # a 4-px line
    small, _ = refinement.prepare_inputs(edge, torch.rand(1, 3, 128, 128), "white-on-black")
    assert small.shape[-2:] == (32, 32)
    assert small[0, 0, 16, 4:28].all()  # the thin line survives (1/4 of each pixel: > 59/255)
    assert small[0, 0, 4:28, 5].all() and not small[0, 0, 4:12, [4, 6]].any()  # 4 px -> 1 px


def test_a_photo_file_is_read_reduced(tmp_path, refinement):
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1500, 3000, 3), dtype=np.uint8)).save(photo)
    assert refinement.read_photo(photo).shape == (1, 3, 512, MAX_PHOTO_SIDE)
    seen = network_sizes(refinement)
    assert refinement.from_photo(photo).shape == (1, 3, 512, 1024)
    assert seen == [(32, 64)]


# ------------------------------------------------------------------------ row 16: ONNX contract
def test_row16_the_onnx_graph_takes_what_prepare_inputs_gives(refinement, tmp_path):
    path = tmp_path / "pirec.onnx"
    export(refinement, "onnx", path)
    edge, color = line_pair(64)  # black-on-white line art, larger than the model's 32 px
    graph_edge, graph_color = refinement.prepare_inputs(edge, color, edge_style="drawn")
    assert graph_edge.shape[-2:] == (32, 32) and graph_edge.mean() < 0.5  # white lines on black
    image = resize_output(run_exported(path, "onnx", graph_edge, graph_color), (64, 64))
    expected = refinement.reconstruct(edge, color, edge_style="drawn")
    assert float((image - expected).abs().max()) < 1e-4
    # and the contract is written down where ONNX users look
    text = (PROJECT_ROOT / "docs" / "inference.md").read_text()
    section = text.split("## The ONNX input contract")[1].split("\n## ")[0]
    for needed in ("white lines on black", "prepare_inputs", "thinn", "resiz", "polarity"):
        assert needed in section, needed


# -------------------------------------------------------------------------- row 8 (Python side)
def test_row8_from_checkpoint_reads_a_models_safetensors(tmp_path):
    bundled = model_file("sketch-128")
    rec = Reconstructor.from_checkpoint(bundled, device="cpu")
    reference = Reconstructor.pretrained("sketch-128", device="cpu")
    assert rec.stages == 2 and rec.image_size == 128
    torch.testing.assert_close(
        rec.generator.encoder[1].weight, reference.generator.encoder[1].weight
    )
    renamed = tmp_path / "weights.bin"  # recognised by its content, not only its name
    renamed.write_bytes(bundled.read_bytes())
    assert Reconstructor.from_checkpoint(renamed, device="cpu").stages == 2
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(bundled.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {cut} is damaged")):
        Reconstructor.from_checkpoint(cut, device="cpu")


# ------------------------------------------------------------------------- row 17: grid header
def test_row17_the_grid_names_its_columns():
    tiles = [[torch.full((2, 3, 32, 32), 0.5)] for _ in range(4)]
    columns = [[t[0] for t in tiles]]  # one batch, 4 columns of 2 rows
    labels = ["edge", "color domain", "first stage", "ground truth"]
    grid = evaluation_grid(columns, 2, labels)
    plain = evaluation_grid(columns, 2)
    header = grid.shape[1] - plain.shape[1]
    assert header >= 8 and grid.shape[2] == plain.shape[2]
    torch.testing.assert_close(grid[:, header:], plain)
    strip = grid[:, :header].mean(0)  # white with black text over each column
    for i in range(4):
        over_column = strip[:, 2 + i * 34 : 2 + i * 34 + 32]
        assert (over_column < 0.5).any(), f"no label over column {i}"
    with pytest.raises(ValueError, match="4 grid columns"):
        evaluation_grid(columns, 2, labels[:3])


# ------------------------------------------------------------------- row 10: whole output files
def test_outputs_are_written_whole_with_the_usual_mode(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"an older output")
    save_images(torch.rand(1, 3, 16, 16), [path])
    with Image.open(path) as written:
        assert written.size == (16, 16)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left
    assert path.stat().st_mode & 0o644 == 0o644
