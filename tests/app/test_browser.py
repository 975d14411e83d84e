"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright): draw a stroke,
click Generate, see the output image; an example picked, a photo that is not an image. Run with
``make test-browser``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import SIZE

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> str:
    """``$PIREC_CHROMIUM`` or Debian's ``chromium`` on PATH; skips (with the reason printed)
    before the app is started when there is none, or when Playwright is missing."""
    reasons = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reasons.append("Playwright is not installed (pip install '.[browser]')")
    found = os.environ.get("PIREC_CHROMIUM") or next(
        (p for name in ("chromium", "chromium-browser") if (p := shutil.which(name))), None
    )
    if found is None:
        reasons.append("no Chromium on PATH (apt-get install -y chromium, or set PIREC_CHROMIUM)")
    if reasons:
        reason = "browser test skipped: " + "; ".join(reasons)
        print(reason)
        pytest.skip(reason)
    return found


def test_draw_a_stroke_and_generate(chromium: str, served_app) -> None:
    from playwright.sync_api import sync_playwright

    _, url = served_app
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            canvas = page.locator("#edge-canvas canvas").first
            canvas.wait_for(timeout=60_000)
            page.wait_for_timeout(1_000)  # the editor loads its black background
            box = canvas.bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
            page.mouse.move(x, y)
            page.mouse.down()
            for step in range(1, 21):  # a diagonal stroke with the (white) pen
                page.mouse.move(x + step * box["width"] * 0.02, y + step * box["height"] * 0.02)
            page.mouse.up()
            page.click("#generate")
            output = page.locator("#first-stage img")
            output.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => document.querySelector('#first-stage img')?.naturalWidth > 0"
            )
            size = output.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert size == [SIZE, SIZE]
            assert page.locator(".toast-body.error").count() == 0  # no error shown in the page
        finally:
            browser.close()


#: how many of the elements are shown: laid out, and no ancestor fully transparent
SHOWN = """elements => elements.filter(element => {
    for (let node = element; node; node = node.parentElement)
        if (getComputedStyle(node).opacity === "0") return false;
    return element.getClientRects().length > 0;
}).length"""


@contextmanager
def opened(chromium: str, url: str) -> Iterator[object]:
    """A Playwright page on the app, its canvases ready."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.locator("#color-canvas canvas").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1_000)  # the editors load their blank backgrounds
            yield page
        finally:
            browser.close()


def test_generate_right_after_picking_an_example_uses_the_example(
    chromium: str, served_app, reconstructor, examples_dir: Path, monkeypatch
) -> None:
    """The editors take a while to load a picked pair and hand over their old (blank) pixels
    meanwhile: Generate half a second after the pick must still render the pair."""
    from pirec_lightning.app.sketch import COLOR_BACKGROUND, EDGE_BACKGROUND, flatten_canvas

    inputs = []
    reconstruct = reconstructor.reconstruct

    def spy(edge, color, **kwargs):
        inputs.append((np.asarray(edge), np.asarray(color)))
        return reconstruct(edge, color, **kwargs)

    monkeypatch.setattr(reconstructor, "reconstruct", spy)
    folder = examples_dir / "sketch"
    circle = flatten_canvas(str(folder / "1_e.png"), EDGE_BACKGROUND, SIZE)
    red = flatten_canvas(str(folder / "1_c.png"), COLOR_BACKGROUND, SIZE)
    with opened(chromium, served_app[1]) as page:
        page.locator("#example-pairs tbody tr").first.click()  # 1_e.png + 1_c.png
        page.wait_for_timeout(500)
        page.click("#generate")
        page.wait_for_function(
            "() => document.querySelector('#first-stage img')?.naturalWidth > 0",
            timeout=60_000,
        )
        assert page.locator(".toast-body.error").count() == 0
    # the pair (as the files, or as the editors show them once loaded), not the blank canvases
    edge, color = inputs[-1]
    assert abs(edge.mean() - circle.mean()) < 2 and edge.max() > 0  # blank: all black
    assert np.abs(color.mean((0, 1)) - red.mean((0, 1))).max() < 8  # blank: all white


def test_a_text_file_as_the_photo_is_one_line_in_the_page(
    chromium: str, served_app, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.png").write_text("shopping list: eggs, milk\n")  # passes the type check
    with opened(chromium, served_app[1]) as page:
        page.get_by_text("Extract edges and colors from a photo").click()
        page.locator("#photo input[type=file]").set_input_files(str(tmp_path / "notes.png"))
        toast = page.locator(".toast-body.error")
        toast.wait_for(timeout=60_000)
        message = toast.inner_text()
        page.wait_for_timeout(1_000)  # an "Error" badge over the canvases follows the toast
        for canvas in ("#edge-canvas", "#color-canvas"):  # none hides what they hold
            badges = page.locator(canvas).get_by_text("Error", exact=True)
            assert badges.evaluate_all(SHOWN) == 0
    assert "could not read 'notes.png' as an image" in message
    assert "upload a PNG, JPEG or WebP" in message
    printed = "".join(capfd.readouterr())
    assert "Traceback" not in printed and "ComponentProcessingError" not in printed
