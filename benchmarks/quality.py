"""Reconstruction quality of trained two-stage models, at the validation settings.

For each checkpoint (a refinement ``last.ckpt``: it holds both stages) and each evaluation set it
prints PSNR / SSIM (and LPIPS when its weights can be had) of the colour domain (the no-learning
baseline), of stage 1 (generating) and of stage 2 (refinement), as a Markdown table:

- the embedded emoji's test split and the Noto emoji (a style nobody trains on), with Canny
  edges made as in validation (fixed sigma, kernels and K);
- the same images as a synthetic drawn-lines set (``pirec_lightning.data.drawn_set``: one
  3-pixel stroke per outline), fed thinned to 1 pixel (``edge_style="drawn"``) and as drawn.

Usage::

    python benchmarks/quality.py --checkpoint before=/runs/a/refinement/checkpoints/last.ckpt \\
        --checkpoint after=/runs/b/refinement/checkpoints/last.ckpt \\
        --noto ../shared/data/noto_emoji_128.npz --readme README.md --grids docs/images/quality

``--readme`` rewrites the block between ``<!-- quality-table:start -->`` and
``<!-- quality-table:end -->`` with the table, so the README's figures come from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.utils import save_image

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.data.datamodule import IndexedDataset
from pirec_lightning.data.npz import NpzImageDataset
from pirec_lightning.phases import RefinementPhase
from pirec_lightning.phases.samples import sample_grid
from pirec_lightning.phases.validation import lpips_metric, set_metrics
from pirec_lightning.preprocess.drawn import drawn_lines, prepare_edges

START, END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"
COLUMNS = ("color domain", "stage 1 (generating)", "stage 2 (refinement)")


def evaluation_sets(args: argparse.Namespace) -> dict[str, IndexedDataset]:
    datamodule = PIRECDataModule(image_size=args.image_size, num_workers=0)
    sets = {"emoji test split": datamodule.dataset("test")}
    if args.noto:
        noto = NpzImageDataset(args.noto, args.image_size)
        # an evenly spread, fixed subset of the font's bitmaps
        picked = np.linspace(0, len(noto.images) - 1, min(args.noto_count, len(noto.images)))
        noto.images = noto.images[np.round(picked).astype(int)]
        sets["Noto emoji"] = IndexedDataset(noto)
    return sets


@torch.no_grad()
def make_inputs(dataset: IndexedDataset, image_size: int, batch_size: int) -> list[dict]:
    """Validation-settings inputs (the DataModule's own ``make_inputs``), plus drawn lines."""
    # seed 42: the config's default seed, so the inputs are those validation sees
    datamodule = PIRECDataModule(
        image_size=image_size, outputs=("edge", "color_domain"), confusion={"seed": 42}
    )
    batches = []
    for batch in DataLoader(dataset, batch_size=batch_size):
        made = datamodule.make_inputs(batch, "test")
        made["drawn"] = drawn_lines(made["image"], regions=made["color_domain"])
        batches.append(made)
    return batches


@torch.no_grad()
def evaluate(model: RefinementPhase, batches: list[dict], edges: str, lpips) -> dict:
    """Metrics of colour domain, stage 1 and stage 2 over ``batches``; ``edges``: ``canny``,
    ``drawn`` (thinned: edge_style="drawn") or ``drawn-as-is``."""
    metrics = {c: set_metrics("m") for c in COLUMNS}
    lp = {c: lpips.clone() for c in COLUMNS} if lpips is not None else {}
    for batch in batches:
        edge = batch["edge"] if edges == "canny" else batch["drawn"]
        if edges == "drawn":
            edge = prepare_edges(edge, "drawn")
        color = batch["color_domain"]
        first = model.preliminary_generator(torch.cat([color, edge], 1)).clamp(0, 1)
        second = model.generator(torch.cat([first, edge], 1)).clamp(0, 1)
        target = batch["image"].contiguous()
        for column, image in zip(COLUMNS, (color, first, second)):
            metrics[column].update(image.contiguous(), target)
            if lp:
                lp[column].update(image.contiguous(), target)
    out = {}
    for column in COLUMNS:
        values = {k.removeprefix("m/"): float(v) for k, v in metrics[column].compute().items()}
        if lp:
            values["lpips"] = float(lp[column].compute())
        out[column] = values
    return out


def grid(model: RefinementPhase, batch: dict, edges: str, count: int = 8) -> torch.Tensor:
    edge = batch["edge"] if edges == "canny" else prepare_edges(batch["drawn"], "drawn")
    color = batch["color_domain"]
    with torch.no_grad():
        first = model.preliminary_generator(torch.cat([color, edge], 1))
        second = model.generator(torch.cat([first, edge], 1))
    shown = batch["drawn"] if edges != "canny" else edge
    return sample_grid([shown, color, first, second, batch["image"]], count)


def cell(values: dict, lpips: bool) -> str:
    text = f"{values['psnr']:.2f} / {values['ssim']:.3f}"
    return text + (f" / {values['lpips']:.3f}" if lpips else "")


def table(results: dict, lpips: bool) -> str:
    unit = "PSNR dB / SSIM" + (" / LPIPS" if lpips else "")
    lines = [
        f"| model | set | edges | {' | '.join(COLUMNS)} |",
        "|---|---|---|---|---|---|",
    ]
    for (label, name, edges), row in results.items():
        cells = " | ".join(cell(row[c], lpips) for c in COLUMNS)
        lines.append(f"| {label} | {name} | {edges} | {cells} |")
    return (
        "\n".join(lines) + f"\n\n({unit}; higher is better" + (", LPIPS lower)" if lpips else ")")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="[label=]path")
    parser.add_argument("--noto", help="noto_emoji_128.npz")
    parser.add_argument("--noto-count", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--readme", help="rewrite the quality-table block of this README")
    parser.add_argument("--grids", help="write <prefix>_canny.png and <prefix>_drawn.png")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    started = time.perf_counter()

    lpips, reason = lpips_metric()
    if lpips is None:
        print(reason, file=sys.stderr)
    sets = {
        name: make_inputs(data, args.image_size, args.batch_size)
        for name, data in evaluation_sets(args).items()
    }
    results: dict = {}
    model = None
    for spec in args.checkpoint:
        label, _, path = spec.rpartition("=")
        label = label or Path(path).parents[2].name
        model = RefinementPhase.load_from_checkpoint(path, map_location="cpu").eval()
        for name, batches in sets.items():
            for edges in ("canny", "drawn", "drawn-as-is"):
                results[(label, name, edges)] = evaluate(model, batches, edges, lpips)
                print(label, name, edges, results[(label, name, edges)], flush=True)
    text = table(results, lpips is not None)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    if args.grids and model is not None:
        first_batch = sets["emoji test split"][0]
        for edges in ("canny", "drawn"):
            path = Path(f"{args.grids}_{edges}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid(model, first_batch, edges), path)
    if args.json:
        rows = [
            {"model": k[0], "set": k[1], "edges": k[2], **{c: v[c] for c in COLUMNS}}
            for k, v in results.items()
        ]
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.readme:
        readme = Path(args.readme)
        content = readme.read_text()
        if START not in content or END not in content:
            print(f"error: {readme} has no {START} ... {END} block", file=sys.stderr)
            return 2
        head, rest = content.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
