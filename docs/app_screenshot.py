"""Take docs/images/app.png: the app as ``pirec app`` opens it (the bundled model, its summary),
one example pair picked (or an example photo extracted), Refine run.

    python docs/app_screenshot.py                      # sketch-128 and its second example pair
    python docs/app_screenshot.py --checkpoint runs/quickstart/refinement/checkpoints/last.ckpt \
        --photo 0                                      # a checkpoint, an emoji photo extracted

Needs the `app` and `browser` extras and a Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from pirec_lightning.app import build_app, launch
from pirec_lightning.inference import Reconstructor
from pirec_lightning.pretrained import DEFAULT_MODEL, PREFIX


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a checkpoint (default: the bundled --model)")
    source.add_argument("--model", default=DEFAULT_MODEL, help="a bundled model")
    parser.add_argument("--output", type=Path, default=Path("docs/images/app.png"))
    parser.add_argument("--example", type=int, default=1, help="which example pair to pick")
    parser.add_argument(
        "--photo", type=int, default=None, help="extract this example photo instead of a pair"
    )
    parser.add_argument("--port", type=int, default=7877)
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    args = parser.parse_args()

    if args.checkpoint:
        model, source = (
            Reconstructor.from_checkpoint(args.checkpoint, device="cpu"),
            args.checkpoint,
        )
    else:
        model, source = Reconstructor.pretrained(args.model, device="cpu"), PREFIX + args.model
    app = build_app(model, source=source)
    _, url, _ = launch(app, port=args.port, block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1040})
            page.goto(url)
            page.locator("#edge-canvas canvas").first.wait_for(timeout=60_000)
            if args.photo is None:
                page.locator("#example-pairs tbody tr").nth(args.example).click()
                page.wait_for_timeout(4_000)  # the editors load the pair
            else:
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
