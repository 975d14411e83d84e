"""`pirec export`: TorchScript and ONNX files equal eager within 1e-4 at any batch and size."""

from __future__ import annotations

import pytest
import torch

from pirec_lightning.cli import main
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.export import PARITY_TOLERANCE, run_exported


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_export_matches_eager_at_other_batches_and_sizes(tiny_run, tmp_path, capsys, format):
    ckpt = str(tiny_run["refinement"])
    path = tmp_path / f"pirec.{format}"
    assert main(["export", "--checkpoint", ckpt, "--format", format, "-o", str(path)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    rec = Reconstructor.from_checkpoint(ckpt, "cpu")
    g = torch.Generator().manual_seed(5)
    for batch, height, width in ((1, 29, 33), (4, 32, 32)):
        edge = (torch.rand(batch, 1, height, width, generator=g) > 0.8).float()
        color = torch.rand(batch, 3, height, width, generator=g)
        exported = run_exported(path, format, edge, color)
        eager = rec.reconstruct(edge, color)
        assert exported.shape == (batch, 3, height, width)
        assert float((exported - eager).abs().max()) <= PARITY_TOLERANCE


def test_first_stage_only_and_bad_format(tiny_run, tmp_path, capsys):
    ckpt = str(tiny_run["refinement"])
    path = tmp_path / "first.pt"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                ckpt,
                "--format",
                "torchscript",
                "-o",
                str(path),
                "--no-refine",
            ]
        )
        == 0
    )
    rec = Reconstructor.from_checkpoint(ckpt, "cpu")
    edge = (torch.rand(2, 1, 24, 28) > 0.8).float()
    color = torch.rand(2, 3, 24, 28)
    expected = rec.reconstruct(edge, color, refine=False)
    assert float((run_exported(path, "torchscript", edge, color) - expected).abs().max()) <= 1e-5
    with pytest.raises(SystemExit):  # argparse: exit 2 with the valid choices
        main(["export", "--checkpoint", ckpt, "--format", "tflite", "-o", "x"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
