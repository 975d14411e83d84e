"""Image-folder scan: a first scan, a cached rescan, and decoding every file as the reference.

    python benchmarks/scan.py --files 2000 --side 256

Writes ``--files`` JPEGs (random noise, ``--side`` px, 5 % of them truncated) into a temporary
folder, then prints, in one run: the first scan (headers and tails read in threads), the second
scan (only ``stat``, results from the cache), and the reference: decoding every file fully with
Pillow, which is what finding the bad files costs without a header-level scan.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pirec_lightning.data.scan import scan_images


def _make_folder(root: Path, files: int, side: int) -> int:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    broken = 0
    for k in range(files):
        bad = k % 20 == 0
        broken += bad
        (root / f"{k:06d}.jpg").write_bytes(data[: len(data) // 2] if bad else data)
    return broken


def _decode_all(root: Path) -> int:
    bad = 0
    for path in sorted(root.iterdir()):
        try:
            with Image.open(path) as image:
                image.load()
        except OSError:
            bad += 1
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--side", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache:
        os.environ["PIREC_CACHE_DIR"] = cache
        root = Path(folder)
        broken = _make_folder(root, args.files, args.side)
        timings = {}
        start = time.perf_counter()
        first = scan_images(root)
        timings["first scan (headers + tails, threads)"] = time.perf_counter() - start
        start = time.perf_counter()
        second = scan_images(root)
        timings["second scan (cached by path, size, mtime)"] = time.perf_counter() - start
        start = time.perf_counter()
        decoded_bad = _decode_all(root)
        timings["reference: full Pillow decode of every file"] = time.perf_counter() - start
    print(f"{args.files} JPEGs of {args.side} px, {broken} truncated; {os.cpu_count()} CPUs")
    print(
        f"found bad: scan {len(first.skipped)}, rescan {len(second.skipped)}, decode {decoded_bad}"
    )
    print(f"rescan results from the cache: {second.from_cache} of {args.files}")
    for name, seconds in timings.items():
        print(f"{name:46s} {seconds:8.3f} s  ({args.files / seconds:9.0f} files/s)")


if __name__ == "__main__":
    main()
