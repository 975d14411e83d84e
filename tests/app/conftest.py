"""Fixtures of the app tests: the tiny refinement run as a Reconstructor, example files, and the
app served on a loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("gradio", reason="the app tests need the `app` extra (pip install .[app])")

SIZE = 32  # the tiny run's image size (debug=tiny)


@pytest.fixture(scope="session")
def reconstructor(tiny_run: dict[str, Path]):
    """The two-stage model of the tiny refinement checkpoint, on the CPU."""
    from pirec_lightning.inference import Reconstructor

    return Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu")


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two example pairs in PI-REC's file layout at 128 px: ``sketch/1_e.png`` (white lines on
    black, mode L) + ``1_c.png``, and ``sketch/2_edge.png`` + ``2_cd.png``."""
    root = tmp_path_factory.mktemp("examples") / "sketch"
    root.mkdir()
    for stem, (edge_name, color_name), fill in (
        ("1", ("_e", "_c"), (200, 40, 40)),
        ("2", ("_edge", "_cd"), (40, 90, 200)),
    ):
        edge = Image.new("L", (128, 128), 0)
        ImageDraw.Draw(edge).ellipse((24, 24, 104, 104), outline=255, width=1)
        edge.save(root / f"{stem}{edge_name}.png")
        color = np.full((128, 128, 3), 240, np.uint8)
        color[24:104, 24:104] = fill
        Image.fromarray(color).save(root / f"{stem}{color_name}.png")
    return root.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def served_app(reconstructor, examples_dir: Path) -> Iterator[tuple[object, str]]:
    """``(app, local URL)`` of the app with the tiny model, served by :func:`launch`."""
    from pirec_lightning.app import build_app, launch
    from pirec_lightning.app.sketch import find_examples

    app = build_app(reconstructor, examples=find_examples([examples_dir]), source="tiny run")
    _, url, _ = launch(app, port=free_port(), block=False)
    yield app, url
    app.close()
