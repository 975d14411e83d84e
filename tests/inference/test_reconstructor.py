"""Reconstructor from real checkpoints: stages, sizes, photos, the saved preprocessing settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pirec_lightning.checkpoints import CheckpointError, read_checkpoint
from pirec_lightning.inference import Reconstructor
from pirec_lightning.preprocess import Preprocessor, canny_edges


@pytest.fixture(scope="module")
def refinement(tiny_run) -> Reconstructor:
    return Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu")


def inputs(batch=2, height=32, width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge = (torch.rand(batch, 1, height, width, generator=g) > 0.85).float()
    return edge, torch.rand(batch, 3, height, width, generator=g)


def test_refinement_checkpoint_gives_both_stages_with_its_weights(tiny_run, refinement):
    state = read_checkpoint(tiny_run["refinement"])["state_dict"]
    assert refinement.stages == 2 and not refinement.training
    torch.testing.assert_close(
        refinement.generator.encoder[1].weight, state["preliminary_generator.encoder.1.weight"]
    )
    # the default refinement paints a correction: its generator sits in a ResidualRefiner
    torch.testing.assert_close(
        refinement.refiner.generator.encoder[1].weight, state["generator.encoder.1.weight"]
    )
    edge, color = inputs()
    final, first = refinement.reconstruct(edge, color, return_preliminary=True)
    with torch.no_grad():
        expected_first = refinement.generator(torch.cat([color, edge], 1))
        expected = refinement.refiner(torch.cat([expected_first, edge], 1))
    torch.testing.assert_close(first, expected_first)
    torch.testing.assert_close(final, expected)
    torch.testing.assert_close(refinement.reconstruct(edge, color, refine=False), expected_first)


def test_generating_is_one_stage_and_imitation_is_refused(tiny_run):
    generating = Reconstructor.from_checkpoint(tiny_run["generating"], device="cpu")
    assert generating.stages == 1
    with pytest.raises(CheckpointError, match="imitation checkpoint.*generating or refinement"):
        Reconstructor.from_checkpoint(tiny_run["imitation"])


def test_architecture_and_confusion_come_from_the_checkpoint(tiny_run, refinement):
    data = read_checkpoint(tiny_run["refinement"])["datamodule_hyper_parameters"]
    assert (
        refinement.generator.encoder[1].out_channels == 8 and len(refinement.generator.middle) == 1
    )
    assert refinement.image_size == 32
    assert refinement.confusion.val_median_kernel == data["confusion"]["val_median_kernel"]
    # the saved node, `enabled` and `seed` included, builds a Preprocessor as it is
    pre = Preprocessor(32, data["confusion"])
    assert pre.enabled is True and pre.seed == data["confusion"]["seed"]
    assert Preprocessor(32, data["confusion"], enabled=False, seed=3).seed == 3


def test_odd_sizes_and_batches(refinement):
    edge, color = inputs(3, 37, 50)
    out = refinement.reconstruct(edge, color)
    assert out.shape == (3, 3, 37, 50) and out.min() >= 0 and out.max() <= 1
    # each image alone gives what it gives in the batch (instance norm: per sample)
    torch.testing.assert_close(refinement.reconstruct(edge[1:2], color[1:2]), out[1:2])
    with pytest.raises(ValueError, match="edge 50x36 and color 50x37 must be the same size"):
        refinement.reconstruct(edge[:, :, :36], color)


def test_files_numpy_and_pil_give_the_tensor_result(refinement, tmp_path):
    edge, color = inputs(1, 28, 36)
    edge_u8 = (edge[0, 0].numpy() * 255).astype(np.uint8)
    color_u8 = (color[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(edge_u8).save(tmp_path / "e.png")
    Image.fromarray(color_u8).save(tmp_path / "c.png")
    expected = refinement.reconstruct(edge, torch.from_numpy(color_u8).permute(2, 0, 1) / 255)
    from_files = refinement.reconstruct(tmp_path / "e.png", tmp_path / "c.png")
    torch.testing.assert_close(from_files, expected)
    pil = refinement.reconstruct(
        Image.open(tmp_path / "e.png"), Image.open(tmp_path / "c.png"), output_type="pil"
    )
    np.testing.assert_array_equal(
        np.asarray(pil[0]), np.round(expected[0].permute(1, 2, 0).numpy() * 255)
    )
    as_np = refinement.reconstruct(255 - edge_u8, color_u8, output_type="np")  # line art
    np.testing.assert_allclose(as_np[0], expected[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_from_photo_uses_evaluation_values_scaled_to_the_image(refinement):
    g = torch.Generator().manual_seed(1)
    photo = torch.rand(1, 3, 48, 60, generator=g)
    edge, color = refinement.photo_inputs(photo)
    # the evaluation sigma (4 at 128 px) scaled to 48 px
    torch.testing.assert_close(edge, canny_edges(photo, 4.0 * 48 / 128))
    assert color.shape == (1, 3, 48, 60) and color.flatten(2).unique(dim=2).shape[2] <= 4
    again = refinement.photo_inputs(photo)
    torch.testing.assert_close(again[1], color)  # K-means is seeded
    explicit_edge, explicit_color = refinement.photo_inputs(
        photo, sigma=1.0, median_kernel=5, k=2, second_median_kernel=1
    )
    torch.testing.assert_close(explicit_edge, canny_edges(photo, 1.0))
    assert explicit_color.flatten(2).unique(dim=2).shape[2] <= 2
    refinement.run_size = "input"  # at the photo's own size (the default reduces it to 32 px)
    out = refinement.from_photo(photo)
    torch.testing.assert_close(out, refinement.reconstruct(edge, color))


def test_preprocessor_at_any_size():
    pre = Preprocessor(None, enabled=False)
    big = pre(torch.rand(1, 3, 64, 64), "predict", ("edge",))
    assert big["edge"].shape == (1, 1, 64, 64)
    assert pre(torch.rand(1, 3, 40, 56), "predict", ("edge",))["edge"].shape == (1, 1, 40, 56)
    with pytest.raises(ValueError, match="image_size=None"):
        Preprocessor(32)(torch.rand(1, 3, 40, 40), "predict", ("edge",))
    with pytest.raises(ValueError, match="unknown params"):
        pre(torch.rand(1, 3, 8, 8), "predict", ("edge",), params={"sigma": 1.0})


def test_drawn_edge_style_thins_strokes_before_the_model(refinement, tmp_path):
    """edge_style="drawn" gives what the model gives for the 1-pixel centre lines of the
    strokes; "canny" feeds them as they are (and differs)."""
    from pirec_lightning.inference.pairs import reconstruct_folder
    from pirec_lightning.preprocess.drawn import dilate_edges, thin_edges

    edge, color = inputs()
    strokes = dilate_edges(edge * (torch.rand_like(edge) > 0.7), 1)  # sparse 3-px strokes
    polarity = "white-on-black"
    drawn = refinement.reconstruct(strokes, color, edge_style="drawn", edge_polarity=polarity)
    thinned = refinement.reconstruct(thin_edges(strokes), color, edge_polarity=polarity)
    torch.testing.assert_close(drawn, thinned)
    as_is = refinement.reconstruct(strokes, color, edge_polarity=polarity)
    assert not torch.allclose(drawn, as_is)
    with pytest.raises(ValueError, match="canny, drawn"):
        refinement.reconstruct(strokes, color, edge_style="pencil")
    # folder mode reads pairs the same way
    from torchvision.utils import save_image

    save_image(strokes[0], tmp_path / "1_e.png")
    save_image(color[0], tmp_path / "1_c.png")
    written = reconstruct_folder(
        refinement, tmp_path, tmp_path / "out", edge_polarity=polarity, edge_style="drawn"
    )
    assert len(written) == 1 and written[0].is_file()
