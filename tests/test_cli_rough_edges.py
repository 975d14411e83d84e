"""Issue 27, part A: `pirec reconstruct | export` as a new user meets them (one test per row)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from pirec_lightning.cli import build_parser, main
from pirec_lightning.errors import RunInterrupted
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.pairs import LOCK_FILE, hold_output_dir, reconstruct_folder
from pirec_lightning.pretrained import model_file, model_summary

from .test_checkpoints import write_original


@pytest.fixture
def original(tmp_path):
    """Tiny original-layout PI-REC weights (128 px model): ``--pirec-generator G.pth``."""
    write_original(tmp_path / "G.pth", seed=1, b=8, blocks=1)
    return ["--pirec-generator", str(tmp_path / "G.pth")]


def pair(folder, name="3", size=(32, 32), color_size=None):
    """An edge/color pair ``name_e.png`` / ``name_c.png`` (sizes as (width, height))."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    edge = np.zeros((height, width), np.uint8)
    edge[height // 2, 2:-2] = 255
    cw, ch = color_size or size
    rng = np.random.default_rng(0)
    Image.fromarray(edge, mode="L").save(folder / f"{name}_e.png")
    color = rng.integers(0, 256, (ch, cw, 3), dtype=np.uint8)
    Image.fromarray(color).save(folder / f"{name}_c.png")
    return folder / f"{name}_e.png", folder / f"{name}_c.png"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "usage:" not in err
    return err


# ------------------------------------------------------------------------------ row 1: big photo
def test_row1_a_9000_px_photo_is_reduced_before_any_work(original, tmp_path, capsys):
    big = tmp_path / "big.png"
    pixels = np.zeros((9000, 9000), np.uint8)
    pixels[:, 4500:] = 200
    pixels[3000:6000, 2000:7000] = 90
    Image.fromarray(pixels, mode="L").save(big, compress_level=1)  # 81 Mpx, a few hundred kB
    out = tmp_path / "o.png"
    start = time.perf_counter()
    assert main(["reconstruct", *original, "--photo", str(big), "-o", str(out)]) == 0
    assert time.perf_counter() - start < 60  # more than 150 s before
    said = capsys.readouterr().out
    assert "1024x1024" in said and "9000x9000" in said
    with Image.open(out) as written:
        assert written.size == (1024, 1024)


def test_row1_the_photo_reaches_the_preprocessing_at_the_models_size(tmp_path):
    big = tmp_path / "big.png"
    pixels = np.full((9000, 9000), 30, np.uint8)
    pixels[2000:7000, 2000:7000] = 220
    Image.fromarray(pixels, mode="L").save(big, compress_level=1)
    write_original(tmp_path / "G.pth", seed=1, b=8, blocks=1)
    rec = Reconstructor.from_pirec(tmp_path / "G.pth", device="cpu")
    seen = []

    def record(module, args):
        seen.append(tuple(args[0].shape[-2:]))
        assert max(seen[-1]) <= 1024, f"the preprocessing got a {seen[-1]} image"

    rec.preprocessor.register_forward_pre_hook(record)
    output = rec.from_photo(big)
    assert seen == [(128, 128)] and output.shape[-2:] == (1024, 1024)


# ----------------------------------------------------------------------- row 2: progress and speed
def test_row2_folder_mode_says_how_far_it_is(original, tmp_path, capsys):
    for name in "1234":
        pair(tmp_path / "in", name)
    args = ["reconstruct", *original, "--input-dir", str(tmp_path / "in")]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--batch-size", "1"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "\r" not in captured.err  # not a terminal: plain lines
    assert any(line.startswith("reconstructed 1 of 4 (25 %)") for line in lines), lines
    assert any("left" in line for line in lines)
    assert lines[-1].startswith("reconstructed 4 of 4 (100 %)") and "images/s" in lines[-1]
    assert "wrote 4 images" in captured.out and "images/s" in captured.out


# ------------------------------------------------------------------ row 4: argparse's usage block
@pytest.mark.parametrize(
    "args, expected",
    [
        (["reconstruct", "--model", "sketch-128", "--checkpoint", "x.ckpt", "--photo", "p.png"],
         "not allowed with argument"),
        (["export", "--checkpoint", "x.ckpt", "--format", "tflite", "-o", "m.onnx"],
         "invalid choice: 'tflite'"),
        (["reconstruct", "--model", "sketch-128"], "one of the arguments"),
    ],
)  # fmt: skip
def test_row4_usage_mistakes_are_one_line(capsys, args, expected):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = one_error_line(capsys)
    assert expected in err and "--help" in err


# --------------------------------------------------------------------------- row 5: --photo --color
def test_row5_photo_with_color_is_refused(original, tmp_path, capsys):
    edge, color = pair(tmp_path)
    out = tmp_path / "o.png"
    args = ["reconstruct", *original, "--photo", str(color), "--color", str(color), "-o", str(out)]
    assert main(args) == 2
    assert "--color goes with --edge" in one_error_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------------- row 7: export's extension
@pytest.mark.parametrize(
    "format, name, expected",
    [("onnx", "model.pt", "model.onnx"), ("torchscript", "model.onnx", "model.pt")],
)
def test_row7_export_name_must_match_the_format(original, tmp_path, capsys, format, name, expected):
    path = tmp_path / name
    assert main(["export", *original, "--format", format, "-o", str(path)]) == 2
    err = one_error_line(capsys)
    assert str(tmp_path / expected) in err
    assert not path.exists()


# ----------------------------------------------------------------- row 8: a .safetensors checkpoint
def test_row8_a_models_safetensors_file_loads_and_a_truncated_one_is_damaged(tmp_path, capsys):
    edge, color = pair(tmp_path / "in")
    bundled = model_file("sketch-128")
    args = ["--edge", str(edge), "--color", str(color), "--device", "cpu"]
    out = tmp_path / "o.png"
    assert main(["reconstruct", "--checkpoint", str(bundled), *args, "-o", str(out)]) == 0
    expected = Reconstructor.pretrained("sketch-128", "cpu").reconstruct(
        edge, color, output_type="pil"
    )
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(expected[0]))
    for keep in (bundled.stat().st_size // 2, 100):  # cut in the tensors, cut in the header
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(bundled.read_bytes()[:keep])
        args_cut = ["reconstruct", "--checkpoint", str(cut), *args, "-o", str(tmp_path / "c.png")]
        assert main(args_cut) == 2
        err = one_error_line(capsys)
        assert "is damaged" in err and str(cut) in err and "--model" in err


# ------------------------------------------------------------------------------- row 9: Ctrl-C
class CtrlC(pl.Callback):
    """Presses Ctrl-C (a real SIGINT to this process) at the end of the second batch: the
    third, in progress then, is finished and written, then the run stops."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_row9_ctrl_c_in_folder_mode_is_one_line_and_goes_on(original, tmp_path, capsys):
    for name in "12345":
        pair(tmp_path / "in", name)
    rec = Reconstructor.from_pirec(original[1], device="cpu")
    with pytest.raises(RunInterrupted) as stop:
        reconstruct_folder(rec, tmp_path / "in", tmp_path / "out", 1, callbacks=[CtrlC()])
    assert stop.value.exit_code == 130
    assert "3 of 5 written" in str(stop.value) and "--skip-existing" in str(stop.value)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["1_out.png", "2_out.png", "3_out.png"]  # whole files, no lock left
    first = (tmp_path / "out" / "1_out.png").stat().st_mtime_ns
    args = ["reconstruct", *original, "--input-dir", str(tmp_path / "in")]
    args += ["--output-dir", str(tmp_path / "out")]
    assert main(args) == 2  # the outputs there are not replaced silently
    assert "--skip-existing" in one_error_line(capsys)
    assert main([*args, "--skip-existing"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert len(list((tmp_path / "out").iterdir())) == 5
    assert (tmp_path / "out" / "1_out.png").stat().st_mtime_ns == first


def test_row9_the_cli_exits_130_with_one_line(original, tmp_path, capsys, monkeypatch):
    for name in "123":
        pair(tmp_path / "in", name)
    # Ctrl-C pressed while the first batch runs: the networks' forward sends a real SIGINT
    rec_forward = torch.nn.Module.__call__
    pressed = []

    def press_once(self, *args, **kwargs):
        if not pressed and type(self).__name__ == "Generator":
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return rec_forward(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", press_once)
    args = ["reconstruct", *original, "--input-dir", str(tmp_path / "in"), "--batch-size", "1"]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"error: interrupted: 1 of 3 written to {tmp_path / 'out'}; to go on, " \
        "run the same command with --skip-existing"  # fmt: skip
    assert not any("KeyboardInterrupt" in line for line in err)


# ----------------------------------------------------------------- row 10: one run per output folder
def test_row10_a_second_run_into_a_held_folder_is_refused(original, tmp_path, capsys):
    pair(tmp_path / "in")
    args = ["reconstruct", *original, "--input-dir", str(tmp_path / "in")]
    with hold_output_dir(tmp_path / "out"):  # another run writing there now
        assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
        err = one_error_line(capsys)
        assert "in use by another pirec reconstruct" in err and f"PID {os.getpid()}" in err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_FILE]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 0  # free again
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3_out.png"]


# -------------------------------------------------------------------- row 11: sizes in pixels
def test_row11_mismatched_sizes_are_said_in_pixels(original, tmp_path, capsys):
    edge, color = pair(tmp_path, size=(128, 128), color_size=(200, 100))
    args = ["reconstruct", *original, "--edge", str(edge), "--color", str(color)]
    assert main([*args, "-o", str(tmp_path / "o.png")]) == 2
    err = one_error_line(capsys)
    assert "edge 128x128 and color 200x100" in err and "(1, 3" not in err


# ------------------------------------------------------------------- row 12: unpaired files
def test_row12_unpaired_files_say_what_each_lacks(original, tmp_path, capsys):
    folder = tmp_path / "unpaired"
    pair(folder, "1")
    (folder / "1_c.png").rename(folder / "2_c.png")
    Image.new("RGB", (16, 16)).save(folder / "notes.png")
    args = ["reconstruct", *original, "--input-dir", str(folder), "--output-dir", str(tmp_path)]
    assert main(args) == 2
    err = one_error_line(capsys)
    assert "1_e.png has no 1_c.png" in err and "2_c.png has no 2_e.png" in err
    assert "notes.png is not named N_e/N_c" in err


# ------------------------------------------------------------------- row 13: 1x1 inputs
def test_row13_a_1x1_pair_is_the_error_alone(original, tmp_path, capsys):
    for name in ("e", "c"):
        Image.new("L", (1, 1)).save(tmp_path / f"{name}.png")
    args = ["reconstruct", *original, "--edge", str(tmp_path / "e.png")]
    args += ["--color", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png")]
    assert main(args) == 2
    assert "too small" in one_error_line(capsys)  # no "warning: ... no edge pixels" first


# ------------------------------------------------------------- row 15: --model's help says what for
def test_row15_model_help_carries_the_models_summary():
    parser = build_parser()
    reconstruct = parser._subparsers._group_actions[0].choices["reconstruct"]
    text = "".join(reconstruct.format_help().split())  # as wrapped: compared without spaces
    summary = "".join(model_summary("sketch-128").split())
    assert summary and summary in text
