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
    np.testing.assert_array_equal(
        as_array(out_dir / "getchu" / "fringe_out.png"), np.asarray(expected)
    )


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
