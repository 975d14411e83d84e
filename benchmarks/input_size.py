"""At which size should a model run on an input that is not its training size?

    python benchmarks/input_size.py [--model sketch-128] [--sizes 128,256,512] [--images 48]
                                    [--threads 2] [--json]

The avatars' test split (``data=avatars``: lorelei and personas, held out of training, and the
test share of the other styles; only the styles with line art) is rendered at each of
``--sizes`` px with its ground truth. Two inputs per avatar, both at that size:

- ``line art``: the artists' line art (1 = ink) as the edge map and the color domain the
  model's evaluation settings make from the picture (scaled to the size), through
  ``Reconstructor.reconstruct`` (edge_style ``canny``: the lines as they are);
- ``photo``: the picture itself through ``Reconstructor.from_photo`` (its Canny edges and color
  domain made by the model's evaluation settings).

Each runs two ways: (a) ``run_size="input"``, at the input's own size; (b) ``run_size="model"``,
reduced to the model's size (shorter side), run, and resized back. PSNR and SSIM
(torchmetrics, data range 1) of the final image against the picture at that size, plus LPIPS
where ``pirec_lightning.models.metrics.lpips_distance`` exists and its weights are at hand. The
same avatars at every size; ``--images`` of them spread evenly over the split. Seconds per image
are printed too (CPU, ``--threads`` threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.data import Subset

from pirec_lightning.data.avatars import AvatarDataset
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import spread_indices

ARMS = (("a", "input"), ("b", "model"))
INPUTS = ("line art", "photo")


def lpips_function():
    """``lpips_distance(x, y) -> (B,)`` when issue 24's LPIPS helper exists and has its
    weights; else None and the reason."""
    try:
        from pirec_lightning.models.metrics import lpips_distance  # type: ignore[attr-defined]
    except ImportError:
        return None, "LPIPS: pirec_lightning.models.metrics.lpips_distance does not exist here"
    try:
        lpips_distance(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    except Exception as error:  # weights not at hand (offline): say so, keep PSNR/SSIM
        return None, f"LPIPS skipped: {' '.join(str(error).split())[:200]}"
    return lpips_distance, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sketch-128")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    lpips, lpips_note = lpips_function()
    sizes = [int(s) for s in args.sizes.split(",")]
    models = {arm: Reconstructor.pretrained(args.model, "cpu", run_size=arm) for _, arm in ARMS}
    rows = []
    for size in sizes:
        data = AvatarDataset("test", image_size=size)
        with_lines = [i for i, (style, _) in enumerate(data.items) if style_has_lines(style)]
        chosen = [with_lines[i] for i in spread_indices(len(with_lines), args.images)]
        items = Subset(data, chosen)
        scores = {(kind, arm): [] for kind in INPUTS for _, arm in ARMS}
        seconds = {(kind, arm): [] for kind in INPUTS for _, arm in ARMS}
        for index in range(len(items)):
            item = items[index]
            picture, line_art = item["image"][None], item["line_art"][None]
            _, color = models["input"].photo_inputs(picture, seed=index)
            for _, arm in ARMS:
                model = models[arm]
                for kind in INPUTS:
                    start = time.perf_counter()
                    if kind == "line art":
                        output = model.reconstruct(line_art, color)
                    else:
                        output = model.from_photo(picture, seed=index)
                    seconds[kind, arm].append(time.perf_counter() - start)
                    values = {
                        "psnr": float(peak_signal_noise_ratio(output, picture, data_range=1.0)),
                        "ssim": float(
                            structural_similarity_index_measure(output, picture, data_range=1.0)
                        ),
                    }
                    if lpips is not None:
                        values["lpips"] = float(lpips(output, picture).mean())
                    scores[kind, arm].append(values)
        for (kind, arm), values in scores.items():
            row = {"size": size, "input": kind, "run_size": arm, "images": len(values)}
            for name in values[0]:
                row[name] = round(statistics.fmean(v[name] for v in values), 4)
            row["s_per_image"] = round(statistics.median(seconds[kind, arm]), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": rows, "note": lpips_note, "model": args.model}, indent=1))
        return
    names = [n for n in ("psnr", "ssim", "lpips") if n in rows[0]]
    print(f"{args.model} on {rows[0]['images']} test avatars per size; {lpips_note}".rstrip("; "))
    print("| size | input | run at | " + " | ".join(names) + " | s/image |")
    print("|---" * (len(names) + 4) + "|")
    for row in rows:
        where = "input's size (a)" if row["run_size"] == "input" else "model's size (b)"
        cells = " | ".join(f"{row[n]:.4f}" for n in names)
        print(f"| {row['size']} | {row['input']} | {where} | {cells} | {row['s_per_image']} |")


def style_has_lines(style: str) -> bool:
    from pirec_lightning.data.avatars import LINE_ART_STYLES

    return style in LINE_ART_STYLES


if __name__ == "__main__":
    main()
