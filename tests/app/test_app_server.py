"""The app served on a loopback port and driven through its HTTP API with gradio_client."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from pirec_lightning.app import MAX_UPLOAD
from tests.app.conftest import SIZE


def editor(path: Path) -> dict:
    """An image editor value holding one file as its background, as the page sends it."""
    return {"background": handle_file(str(path)), "layers": [], "composite": None}


@pytest.fixture(scope="module")
def client(served_app) -> Client:
    return Client(served_app[1], verbose=False, download_files=True)


def test_served_on_loopback_without_analytics_or_share_link(served_app) -> None:
    app, url = served_app
    assert url.startswith("http://127.0.0.1:")
    assert app.share is False and app.analytics_enabled is False
    assert app.max_file_size == 10 * 1024**2 and MAX_UPLOAD == "10mb"
    # one model request at a time: every model event shares one queue slot
    model_events = [fn for fn in app.fns.values() if fn.concurrency_id == "model"]
    assert {fn.api_name for fn in model_events} == {"generate", "refine", "extract"}
    assert all(fn.concurrency_limit == 1 for fn in model_events)


def test_generate_from_an_example_pair(client: Client, examples_dir: Path) -> None:
    folder = examples_dir / "sketch"
    result = client.predict(
        editor(folder / "1_e.png"), editor(folder / "1_c.png"), api_name="/generate"
    )
    with Image.open(result) as image:
        assert image.size == (SIZE, SIZE) and image.mode == "RGB"


def test_refine_returns_both_stages(client: Client, examples_dir: Path) -> None:
    folder = examples_dir / "sketch"
    first, refined = client.predict(
        editor(folder / "2_edge.png"), editor(folder / "2_cd.png"), api_name="/refine"
    )
    assert Image.open(first).size == Image.open(refined).size == (SIZE, SIZE)


def test_extract_a_transparent_photo(client: Client, tmp_path: Path) -> None:
    # an emoji-like RGBA photo: its transparent surround must read as white, not as the
    # arbitrary colors stored under alpha 0
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = (0, 200, 0)  # hidden under alpha 0
    rgba[16:48, 16:48] = (250, 200, 40, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "emoji.png")
    edge, color, lines = client.predict(
        handle_file(str(tmp_path / "emoji.png")), 1.0, 2, api_name="/extract"
    )
    assert lines == "canny"  # extracted edges are Canny's: the model gets them unthinned
    color = np.asarray(Image.open(color["background"]).convert("RGB"))
    edge = np.asarray(Image.open(edge["background"]).convert("L"))
    assert color.shape == (SIZE, SIZE, 3) and edge.shape == (SIZE, SIZE)
    assert color[0, 0].min() >= 240  # white (the hidden green would read (0, 200, 0))
    assert np.abs(color[SIZE // 2, SIZE // 2].astype(int) - (250, 200, 40)).max() < 10
    assert edge.max() == 255 and edge[0, 0] == 0  # white lines on black around the square


def test_errors_reach_the_client_as_one_line(client: Client, examples_dir: Path) -> None:
    empty = {"background": None, "layers": [], "composite": None}
    with pytest.raises(Exception, match="canvas is empty") as caught:
        client.predict(empty, editor(examples_dir / "sketch" / "1_c.png"), api_name="/generate")
    assert "Traceback" not in str(caught.value)


def test_a_text_file_as_the_photo_is_one_line_not_a_traceback(
    client: Client, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # a text file under an image's name passes the page's file-type check; Gradio's own
    # preprocessing of it printed a ComponentProcessingError and showed a bare "Error"
    (tmp_path / "notes.png").write_text("shopping list: eggs, milk\n")
    with pytest.raises(Exception, match="could not read 'notes.png' as an image") as caught:
        client.predict(handle_file(str(tmp_path / "notes.png")), 1.0, 2, api_name="/extract")
    assert str(caught.value).endswith("upload a PNG, JPEG or WebP")
    printed = "".join(capfd.readouterr())
    assert "Traceback" not in printed and "ComponentProcessingError" not in printed


def test_uploads_over_the_limit_are_refused(served_app) -> None:
    _, url = served_app
    big = b"\0" * (10 * 1024**2 + 1024)
    response = httpx.post(
        f"{url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60
    )
    assert response.status_code == 413
