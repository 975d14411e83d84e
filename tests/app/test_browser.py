"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright): draw a stroke,
click Generate, see the output image. Run with ``make test-browser``."""

from __future__ import annotations

import os
import shutil

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
