"""`pirec reconstruct` on the PI-REC release's own example files (skipped without ../shared)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pirec_lightning.cli import main
from pirec_lightning.inference import Reconstructor

from .conftest import SHARED
from .test_checkpoints import write_original

EXAMPLES = SHARED / "data" / "pirec_examples"
needs_examples = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason="needs ../shared/data/pirec_examples"
)


def as_array(path):
    return np.asarray(Image.open(path))


@needs_examples
def test_reconstruct_a_pair_and_a_photo(tiny_run, tmp_path, capsys):
    ckpt = str(tiny_run["refinement"])
    edge, color = EXAMPLES / "getchu" / "4_edge.png", EXAMPLES / "getchu" / "4_cd.png"
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "reconstruct",
                "--checkpoint",
                ckpt,
                "--edge",
                str(edge),
                "--color",
                str(color),
                "-o",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    expected = Reconstructor.from_checkpoint(ckpt, "cpu").reconstruct(
        edge, color, output_type="pil"
    )[0]
    np.testing.assert_array_equal(as_array(out), np.asarray(expected))
    assert as_array(out).shape == (128, 128, 3)

    photo_out = tmp_path / "photo.png"
    photo = EXAMPLES / "celeba" / "3.png"
    assert (
        main(
            [
                "reconstruct",
                "--checkpoint",
                ckpt,
                "--photo",
                str(photo),
                "-o",
                str(photo_out),
                "--no-refine",
                "--k",
                "3",
            ]
        )
        == 0
    )
    expected = Reconstructor.from_checkpoint(ckpt, "cpu").from_photo(
        photo, k=3, refine=False, output_type="pil"
    )[0]
    np.testing.assert_array_equal(as_array(photo_out), np.asarray(expected))


@needs_examples
def test_folder_mode_pairs_every_naming_scheme(tiny_run, tmp_path, capsys):
    ckpt = str(tiny_run["refinement"])
    out_dir = tmp_path / "out"
    assert (
        main(
            [
                "reconstruct",
                "--checkpoint",
                ckpt,
                "--input-dir",
                str(EXAMPLES),
                "--output-dir",
                str(out_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.png"))
    # N_e/N_c, N_edge/N_cd (getchu/4) and N_edge/N_color (fringe, long_hair)
    assert len(written) == 13
    for name in (
        "celeba/3_out.png",
        "getchu/4_out.png",
        "getchu/fringe_out.png",
        "getchu/long_hair_out.png",
    ):
        assert name in written
    assert "getchu/banner1_out.png" in written and "wrote 13 images" in capsys.readouterr().out
    rec = Reconstructor.from_checkpoint(ckpt, "cpu")
    expected = rec.reconstruct(
        EXAMPLES / "getchu" / "fringe_edge.png",
        EXAMPLES / "getchu" / "fringe_color.png",
        output_type="pil",
    )[0]
    # batched with the folder's other pairs of its size: a float rounding may move one 8-bit level
    written = as_array(out_dir / "getchu" / "fringe_out.png").astype(int)
    assert np.abs(written - np.asarray(expected).astype(int)).max() <= 1


@needs_examples
def test_original_pirec_weights_from_the_command_line(tmp_path):
    write_original(tmp_path / "G.pth", seed=1, b=8, blocks=1)
    write_original(tmp_path / "R.pth", seed=2, b=8, blocks=1)
    out = tmp_path / "out.png"
    args = [
        "reconstruct",
        "--pirec-generator",
        str(tmp_path / "G.pth"),
        "--pirec-refiner",
        str(tmp_path / "R.pth"),
    ]
    args += [
        "--edge",
        str(EXAMPLES / "celeba" / "3_e.png"),
        "--color",
        str(EXAMPLES / "celeba" / "3_c.png"),
        "-o",
        str(out),
    ]
    assert main(args) == 0 and as_array(out).shape == (128, 128, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--edge", "e.png", "--color", "c.png", "-o", "o.png"], "imitation checkpoint"),
        (["--edge", "e.png", "-o", "o.png"], "--edge needs --color"),
        (["--input-dir", "nowhere"], "--input-dir needs --output-dir"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tiny_run, capsys, args, message):
    assert main(["reconstruct", "--checkpoint", str(tiny_run["imitation"]), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_checkpoint_and_missing_pairs(tmp_path, capsys):
    assert (
        main(
            [
                "reconstruct",
                "--checkpoint",
                str(tmp_path / "no.ckpt"),
                "--edge",
                "e",
                "--color",
                "c",
                "-o",
                "o.png",
            ]
        )
        == 2
    )
    assert "checkpoint file does not exist" in capsys.readouterr().err
    write_original(tmp_path / "G.pth", seed=1, b=8, blocks=1)
    (tmp_path / "in").mkdir()
    assert (
        main(
            [
                "reconstruct",
                "--pirec-generator",
                str(tmp_path / "G.pth"),
                "--input-dir",
                str(tmp_path / "in"),
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no edge/color pairs" in capsys.readouterr().err


# ------------------------------------------------------------------ issue 20: outputs and devices
@pytest.fixture
def original(tmp_path):
    """Tiny original-layout PI-REC weights: ``--pirec-generator G.pth`` (loads in a blink)."""
    write_original(tmp_path / "G.pth", seed=1, b=8, blocks=1)
    return ["--pirec-generator", str(tmp_path / "G.pth")]


def pair(folder, name="3", size=32):
    """An edge/color pair ``name_e.png`` / ``name_c.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    edge = np.zeros((size, size), np.uint8)
    edge[size // 2, 2:-2] = 255
    rng = np.random.default_rng(0)
    Image.fromarray(edge, mode="L").save(folder / f"{name}_e.png")
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        folder / f"{name}_c.png"
    )
    return folder / f"{name}_e.png", folder / f"{name}_c.png"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_folder_mode_never_replaces_an_existing_file(original, tmp_path, capsys):
    folder = tmp_path / "pairs"
    pair(folder)
    release_out = folder / "3_out.png"  # what PI-REC's examples ship next to their pairs
    release_out.write_bytes(b"PI-REC's own output")
    args = ["reconstruct", *original, "--input-dir", str(folder), "--device", "cpu"]
    assert main([*args, "--output-dir", str(folder)]) == 2
    err = one_error_line(capsys)
    assert str(release_out) in err and "--overwrite" in err
    assert release_out.read_bytes() == b"PI-REC's own output"
    # --overwrite writes over outputs, never over inputs
    assert main([*args, "--output-dir", str(folder), "--overwrite"]) == 0
    assert as_array(release_out).shape == (32, 32, 3)


def test_single_output_never_replaces_an_input(original, tmp_path, capsys):
    edge, color = pair(tmp_path)
    before = edge.read_bytes()
    args = ["reconstruct", *original, "--edge", str(edge), "--color", str(color)]
    for extra in ([], ["--overwrite"]):
        assert main([*args, "-o", str(edge), *extra]) == 2
        err = one_error_line(capsys)
        assert "input" in err and str(edge) in err
        assert edge.read_bytes() == before
    out = tmp_path / "out.png"
    assert main([*args, "-o", str(out)]) == 0
    written = out.read_bytes()
    assert main([*args, "-o", str(out)]) == 2  # it exists now
    assert "--overwrite" in one_error_line(capsys)
    assert main([*args, "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() == written


def test_devices_this_machine_lacks_are_one_line(original, tmp_path, capsys):
    import torch

    edge, color = pair(tmp_path)
    args = ["reconstruct", *original, "--edge", str(edge), "--color", str(color)]
    args += ["-o", str(tmp_path / "out.png")]
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "no CUDA GPU" in one_error_line(capsys)
    assert main([*args, "--device", "gpu"]) == 2
    err = one_error_line(capsys)
    assert "unknown device 'gpu'" in err and "--device cpu, cuda or cuda:N" in err
    assert not (tmp_path / "out.png").exists()


def test_unwritable_outputs_are_one_line(original, tmp_path, capsys):
    """A path under a regular file cannot be written, even by root (unlike a chmod 0o555 dir)."""
    edge, color = pair(tmp_path / "in")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    single = ["reconstruct", *original, "--edge", str(edge), "--color", str(color)]
    assert main([*single, "-o", str(blocker / "x.png")]) == 2
    assert str(blocker) in one_error_line(capsys)
    folder = ["reconstruct", *original, "--input-dir", str(tmp_path / "in"), "--device", "cpu"]
    assert main([*folder, "--output-dir", str(blocker / "out")]) == 2
    assert str(blocker) in one_error_line(capsys)
    export = ["export", *original, "--format", "torchscript", "-o", str(blocker / "m.pt")]
    assert main(export) == 2
    assert str(blocker) in one_error_line(capsys)
    evaluate = ["evaluate", *original, "--input-dir", str(tmp_path / "in"), "--limit", "1"]
    assert main([*evaluate, "-O", str(blocker / "eval")]) == 2
    assert str(blocker) in one_error_line(capsys)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--edge", "{e}", "--color", "{c}", "-o", "{tmp}/outdir"], "image file name"),
        (["--edge", "{e}", "--color", "{c}", "-o", "{tmp}"], "image file name"),
        (["--input-dir", "{e}", "--output-dir", "{tmp}/o"], "is a file, not a folder"),
        (["--input-dir", "{tmp}", "--output-dir", "{tmp}/o", "--batch-size", "0"], "--batch-size"),
        (["--edge", "{e}", "--color", "{c}", "-o", "{tmp}/o.png", "--k", "5"], "--k"),
        (["--edge", "{tiny}", "--color", "{tiny}", "-o", "{tmp}/o.png"], "too small"),
    ],
)
def test_messages_name_the_problem(original, tmp_path, capsys, args, message):
    edge, color = pair(tmp_path / "in")
    tiny = np.zeros((4, 4, 3), np.uint8)
    tiny[1, 1] = 255  # one line pixel: not an empty edge map (that would warn)
    Image.fromarray(tiny).save(tmp_path / "tiny.png")
    values = {"e": edge, "c": color, "tmp": tmp_path, "tiny": tmp_path / "tiny.png"}
    args = [a.format(**values) for a in args]
    assert main(["reconstruct", *original, *args]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "outdir").exists()


def test_checkpoint_that_is_text_or_a_folder(tmp_path, capsys):
    args = ["--edge", "e.png", "--color", "c.png", "-o", str(tmp_path / "o.png")]
    for text in ("epoch,loss\n1,0.5\n", "hi\n"):
        path = tmp_path / "notes.ckpt"
        path.write_text(text)
        assert main(["reconstruct", "--checkpoint", str(path), *args]) == 2
        err = one_error_line(capsys)
        assert str(path) in err and "is not a torch checkpoint file" in err
    assert main(["reconstruct", "--checkpoint", str(tmp_path), *args]) == 2
    assert "is a folder" in one_error_line(capsys)


@needs_examples
def test_swapped_edge_and_color_warn_in_one_line(original, tmp_path, capsys):
    edge, color = EXAMPLES / "celeba" / "3_e.png", EXAMPLES / "celeba" / "3_c.png"
    out = tmp_path / "out.png"
    args = ["reconstruct", *original, "--edge", str(color), "--color", str(edge), "-o", str(out)]
    assert main(args) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if str(color) in line]
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "%" in warning[0]
