"""Original PI-REC checkpoints load onto our Generator and give the original network's output;
every outside file is read weights-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pirec_lightning.checkpoints import CheckpointError, read_checkpoint
from pirec_lightning.inference import Reconstructor
from pirec_lightning.phases.handover import read_init_from

from .conftest import SHARED


def original_shapes(b: int = 64, blocks: int = 8) -> dict[str, tuple[int, ...]]:
    """The original generator's state_dict layout: EdgeConnect's InpaintGenerator (encoder:
    pad-7x7 conv, two 4x4 stride-2 convs; dilated residual middle) whose first decoder layer PI-REC
    turned into upsample + pad + 3x3 conv (decoder.2), then a 4x4 transposed conv (decoder.5) and
    pad-7x7 conv (decoder.9)."""
    shapes = {
        "encoder.1.weight": (b, 4, 7, 7),
        "encoder.1.bias": (b,),
        "encoder.4.weight": (2 * b, b, 4, 4),
        "encoder.4.bias": (2 * b,),
        "encoder.7.weight": (4 * b, 2 * b, 4, 4),
        "encoder.7.bias": (4 * b,),
    }
    for i in range(blocks):
        for conv in (1, 5):
            shapes[f"middle.{i}.conv_block.{conv}.weight"] = (4 * b, 4 * b, 3, 3)
            shapes[f"middle.{i}.conv_block.{conv}.bias"] = (4 * b,)
    shapes |= {
        "decoder.2.weight": (2 * b, 4 * b, 3, 3),
        "decoder.2.bias": (2 * b,),
        "decoder.5.weight": (2 * b, b, 4, 4),  # ConvTranspose2d: (in, out, kh, kw)
        "decoder.5.bias": (b,),
        "decoder.9.weight": (3, b, 7, 7),
        "decoder.9.bias": (3,),
    }
    return shapes


def original_forward(w: dict[str, torch.Tensor], x: torch.Tensor, blocks: int) -> torch.Tensor:
    """PI-REC's generator forward written out from the original architecture."""

    def conv(x, name, pad=0, stride=1, dilation=1, reflect=0):
        if reflect:
            x = F.pad(x, (reflect,) * 4, mode="reflect")
        return F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], stride, pad, dilation)

    def norm_relu(x, relu=True):
        x = F.instance_norm(x, eps=1e-5)
        return F.relu(x) if relu else x

    x = norm_relu(conv(x, "encoder.1", reflect=3))
    x = norm_relu(conv(x, "encoder.4", pad=1, stride=2))
    x = norm_relu(conv(x, "encoder.7", pad=1, stride=2))
    for i in range(blocks):
        y = norm_relu(conv(x, f"middle.{i}.conv_block.1", dilation=2, reflect=2))
        y = norm_relu(conv(y, f"middle.{i}.conv_block.5", reflect=1), relu=False)
        x = x + y
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    x = norm_relu(conv(x, "decoder.2", reflect=1))
    x = F.conv_transpose2d(x, w["decoder.5.weight"], w["decoder.5.bias"], stride=2, padding=1)
    x = norm_relu(x)
    x = conv(x, "decoder.9", reflect=3)
    return (torch.tanh(x) + 1) / 2


def write_original(path: Path, seed: int, b: int = 64, blocks: int = 8) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) * 0.05 for k, s in original_shapes(b, blocks).items()}
    torch.save({"iteration": 123000, "generator": state}, path)
    return state


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared")
def test_original_layout_matches_the_reference_key_file():
    keys = json.loads((SHARED / "reference" / "pirec_generator_keys.json").read_text())
    assert {k: tuple(v) for k, v in keys.items()} == original_shapes()


def test_from_pirec_gives_the_original_networks_output(tmp_path):
    g_state = write_original(tmp_path / "G_Model_gen_123000.pth", seed=1)
    r_state = write_original(tmp_path / "R_Model_gen_123000.pth", seed=2)
    rec = Reconstructor.from_pirec(
        tmp_path / "G_Model_gen_123000.pth", tmp_path / "R_Model_gen_123000.pth", device="cpu"
    )
    assert sum(p.numel() for p in rec.generator.parameters()) == 10_545_219
    gen = torch.Generator().manual_seed(0)
    edge = (torch.rand(2, 1, 32, 32, generator=gen) > 0.85).float()
    color = torch.rand(2, 3, 32, 32, generator=gen)
    final, first = rec.reconstruct(edge, color, return_preliminary=True)
    ref_first = original_forward(g_state, torch.cat([color, edge], 1), 8)
    ref_final = original_forward(r_state, torch.cat([ref_first, edge], 1), 8)
    torch.testing.assert_close(first, ref_first, atol=1e-5, rtol=0)
    torch.testing.assert_close(final, ref_final, atol=1e-5, rtol=0)
    # one stage when asked, or when no refiner is given
    torch.testing.assert_close(
        rec.reconstruct(edge, color, refine=False), ref_first, atol=1e-5, rtol=0
    )
    single = Reconstructor.from_pirec(tmp_path / "G_Model_gen_123000.pth", device="cpu")
    assert single.stages == 1


def test_from_pirec_reads_other_widths_and_rejects_foreign_files(tmp_path):
    write_original(tmp_path / "small.pth", seed=3, b=8, blocks=2)
    rec = Reconstructor.from_pirec(tmp_path / "small.pth", device="cpu")
    assert len(rec.generator.middle) == 2
    torch.save({"iteration": 1, "generator": {"conv.weight": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a PI-REC generator"):
        Reconstructor.from_pirec(tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        Reconstructor.from_pirec(tmp_path / "missing.pth")


class Payload:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "load",
    [
        lambda p: Reconstructor.from_checkpoint(p),
        lambda p: Reconstructor.from_pirec(p),
        read_init_from,
        read_checkpoint,
    ],
    ids=["from_checkpoint", "from_pirec", "handover", "read_checkpoint"],
)
def test_poisoned_pickle_runs_nothing_and_gives_one_line(tmp_path, load):
    marker = tmp_path / "code_ran"
    path = tmp_path / "poisoned.ckpt"
    torch.save({"state_dict": {}, "generator": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as error:
        load(path)
    message = str(error.value)
    assert (
        "\n" not in message
        and "pickled Python objects" in message
        and "references io.open" in message
    )
    assert not marker.exists()
