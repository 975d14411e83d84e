"""Take docs/images/app.png: the app with a checkpoint, an example photo extracted, Refine run.

    python docs/app_screenshot.py --checkpoint runs/quickstart/refinement/checkpoints/last.ckpt

Needs the `app` and `browser` extras and a Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from pirec_lightning.app import build_app, launch
from pirec_lightning.inference import Reconstructor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", type=Path, default=Path("docs/images/app.png"))
    parser.add_argument("--photo", type=int, default=0, help="which example photo to extract")
    parser.add_argument("--port", type=int, default=7877)
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    args = parser.parse_args()

    model = Reconstructor.from_checkpoint(args.checkpoint, device="cpu")
    app = build_app(model, source=args.checkpoint)
    _, url, _ = launch(app, port=args.port, block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1040})
            page.goto(url)
            page.locator("#edge-canvas canvas").first.wait_for(timeout=60_000)
            page.get_by_text("Extract edges and colors from a photo").click()
            page.locator("#photo-examples button, #photo-examples td").nth(args.photo).click()
            page.wait_for_timeout(4_000)  # the live extraction fills both canvases
            page.click("#refine")
            page.wait_for_function(
                "() => document.querySelector('#refined img')?.naturalWidth > 0", timeout=60_000
            )
            page.wait_for_timeout(1_000)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.output))
            browser.close()
    finally:
        app.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
