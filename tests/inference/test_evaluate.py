"""`pirec evaluate`: per-stage metrics on the test split, an .npz or a folder; report and grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from pirec_lightning.cli import main
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import (
    checkpoint_test_split,
    evaluate,
    grid_header,
    spread_indices,
)
from pirec_lightning.models.backbones import backbone_path
from pirec_lightning.models.metrics import optional_metrics


def read_report(folder):
    return json.loads((folder / "report.json").read_text())


def test_report_on_the_checkpoints_test_split(tiny_run, tmp_path, capsys):
    out = tmp_path / "eval"
    ckpt = str(tiny_run["refinement"])
    args = ["evaluate", "--checkpoint", ckpt, "--limit", "6", "--batch-size", "4", "-O", str(out)]
    assert main(args) == 0
    report = read_report(out)
    assert report["images"] == 6 and report["image_size"] == 32
    assert report["source"] == "test split of the embedded emoji"
    assert list(report["stages"]) == ["color_domain", "first_stage", "refined"]
    assert {"psnr", "ssim"} <= set(report["stages"]["refined"])
    # offline (conftest): FID is skipped with one line saying how to enable it; LPIPS and DISTS
    # too unless `pirec weights fetch` converted their backbones on this machine
    assert "FID skipped" in report["skipped"]["fid"]
    printed = capsys.readouterr().out
    assert "| color domain |" in printed
    if backbone_path("alexnet") is None:
        assert "pirec weights fetch" in report["skipped"]["lpips"] and "LPIPS skipped" in printed
    else:
        assert 0 <= report["stages"]["refined"]["lpips"] < 1 and "| lpips |" in printed
    if backbone_path("vgg16") is not None:
        assert 0 <= report["stages"]["refined"]["dists"] < 1
    grid = np.asarray(Image.open(out / "grid.png"))
    header = grid_header(report["grid_columns"], 32, 2 + 5 * 34).shape[1]  # the column names
    assert grid.shape == (header + 2 + 6 * 34, 2 + 5 * 34, 3)  # 6 rows of 5 columns
    assert report["grid_columns"] == [
        "edge",
        "color domain",
        "first stage",
        "refined",
        "ground truth",
    ]

    # the numbers are those of the stages on the same inputs (skimage PSNR over all pixels)
    rec = Reconstructor.from_checkpoint(ckpt, "cpu")
    images, _ = checkpoint_test_split(rec.data_settings)
    chosen = spread_indices(len(images), 6)
    assert len(set(chosen)) == 6 and chosen[0] == 0 and chosen[-1] == len(images) - 1
    batches = [torch.stack([images[i]["image"] for i in chosen[s : s + 4]]) for s in (0, 4)]
    truth, color, final = [], [], []
    for i, batch in enumerate(batches):
        edge, cd = rec.photo_inputs(batch, seed=i)
        truth.append(batch), color.append(cd), final.append(rec.reconstruct_tensors(edge, cd)[0])
    truth = torch.cat(truth).numpy()
    for stage, made in (("color_domain", color), ("refined", final)):
        expected = peak_signal_noise_ratio(truth, torch.cat(made).numpy(), data_range=1.0)
        assert report["stages"][stage]["psnr"] == pytest.approx(expected, abs=1e-3)


def test_npz_and_folder_sources(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = np.full((5, 48, 48, 3), 255, np.uint8)
    for image in images:
        y, x = rng.integers(4, 30, 2)
        image[y : y + 14, x : x + 14] = rng.integers(0, 255, 3)
    np.savez(tmp_path / "set.npz", images=images)
    ckpt = str(tiny_run["generating"])
    args = [
        "evaluate",
        "--checkpoint",
        ckpt,
        "--input-dir",
        str(tmp_path / "set.npz"),
        "-O",
        str(tmp_path / "a"),
    ]
    assert main(args) == 0
    report = read_report(tmp_path / "a")
    assert report["images"] == 5 and report["image_size"] == 32
    assert list(report["stages"]) == ["color_domain", "first_stage"]  # one-stage model
    (tmp_path / "folder").mkdir()
    for i, image in enumerate(images[:3]):
        Image.fromarray(image).save(tmp_path / "folder" / f"{i}.png")
    args = [
        "evaluate",
        "--checkpoint",
        ckpt,
        "--input-dir",
        str(tmp_path / "folder"),
        "--image-size",
        "40",
        "-O",
        str(tmp_path / "b"),
    ]
    assert main(args) == 0
    assert (
        read_report(tmp_path / "b")["images"] == 3
        and read_report(tmp_path / "b")["image_size"] == 40
    )


@pytest.mark.slow  # writes a full 240 MB AlexNet file
def test_lpips_runs_from_an_explicit_weights_file(tiny_run, tmp_path):
    # an AlexNet-shaped file (random weights: this checks the wiring, not LPIPS's quality)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    factories, skipped = optional_metrics(lpips_weights=tmp_path / "alexnet.pth")
    assert "lpips" in factories and "lpips" not in skipped
    rec = Reconstructor.from_checkpoint(tiny_run["refinement"], "cpu")
    images = torch.utils.data.TensorDataset(torch.rand(4, 3, 32, 32))
    data = [t[0] for t in images]
    report, _ = evaluate(rec, data, lpips_weights=tmp_path / "alexnet.pth")
    values = [report["stages"][s]["lpips"] for s in ("color_domain", "first_stage", "refined")]
    assert all(v is not None and v >= 0 for v in values)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.nonsense=1"], "unknown data setting 'nonsense'"),
        (["--input-dir", "x.npz", "data.limit=3"], "drop them with --input-dir"),
        (["model.lr=1"], "unknown override"),
        (["--input-dir", "/nonexistent.npz"], "npz file does not exist"),
    ],
)
def test_mistakes_are_one_line(tiny_run, capsys, extra, message):
    assert main(["evaluate", "--checkpoint", str(tiny_run["refinement"]), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_folder_override_evaluates_the_whole_folder(tiny_run, tmp_path, capsys):
    """``pirec evaluate --checkpoint C data=folder data.root=<7 images>`` evaluated the test
    split of a 7-image folder (and said its val split was empty); a folder the model never
    trained on is evaluated whole, unless data.split is given."""
    folder = tmp_path / "seven"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    ckpt = str(tiny_run["generating"])
    out = tmp_path / "whole"
    args = ["evaluate", "--checkpoint", ckpt, "-O", str(out), "data=folder", f"data.root={folder}"]
    assert main(args) == 0
    assert read_report(out)["images"] == 7
    assert f"all 7 images of {folder}" in capsys.readouterr().out
