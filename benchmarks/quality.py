"""The quality table (docs/quality.md): ``pirec evaluate`` on several sets and edge styles, as Markdown.

For each checkpoint (a refinement ``last.ckpt`` holds both stages; a generating one gives stage 1
only) it runs :func:`pirec_lightning.inference.evaluate.evaluate` (the evaluation settings: fixed Canny
sigma, median kernels and K) on

- the avatars test split (``data=avatars``, with its held-out styles) when the model was trained
  on the avatars (or with ``--avatars``), at the model's size, also with the artists' own line
  art as the edges (``line_art``);
- the mix's test split (``data=mix``, with its held-out styles and sets) when the model was trained
  on the mix (or with ``--mix``), one row per source and per held-out style or set below it;
- the embedded emoji's test split and the Noto emoji (``--noto``, a style nobody trains on;
  ``--noto-count`` images spread evenly over the font), at ``--emoji-size`` (default: the
  model's size; 64 compares a 128 px model with the 64 px quickstart);
- with Canny edges, and with the synthetic drawn-lines set (``--edges drawn``: one 3-pixel stroke
  per outline, fed with ``edge_style="drawn"``, and ``drawn-as-is``: the same strokes unthinned),

and prints PSNR / SSIM and the perceptual metrics of ``--metrics`` (default LPIPS-AlexNet and
DISTS, from the backbones ``pirec weights fetch`` converts; where they are absent the table says so
in one line) of the colour domain (the no-learning baseline), stage 1 (generating) and stage 2
(refinement). ``--readme`` rewrites the
block between ``<!-- quality-table:start -->`` and ``<!-- quality-table:end -->``.

    python benchmarks/quality.py --checkpoint before=/runs/a/refinement/checkpoints/last.ckpt \\
        --checkpoint after=/runs/b/refinement/checkpoints/last.ckpt \\
        --noto ../shared/data/noto_emoji_128.npz --readme docs/quality.md --grids docs/images/quality

``--json`` saves the rows; ``--load`` puts saved rows back in the table without recomputing them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from torchvision.utils import save_image

from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import (
    EDGES,
    checkpoint_test_split,
    evaluate,
    image_source,
    spread_indices,
)
from pirec_lightning.pretrained import PREFIX, read_pretrained

START, END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"
COLUMNS = {"color_domain": "color domain", "first_stage": "stage 1", "refined": "stage 2"}
#: perceptual metrics a cell can show after PSNR / SSIM (lower is better), in order
PERCEPTUAL = {"lpips": "LPIPS", "lpips_vgg": "LPIPS-VGG", "dists": "DISTS"}
#: what ``--metrics`` measures by default (LPIPS-VGG costs as much as DISTS again on a CPU)
DEFAULT_METRICS = ("lpips", "dists")


def metric_columns(rows: list[dict]) -> list[str]:
    """The perceptual metrics some row has a value for, in :data:`PERCEPTUAL` order: the
    table's (and the model card's) columns after PSNR / SSIM."""
    return [
        name
        for name in PERCEPTUAL
        if any(v.get(name) is not None for r in rows for v in r["stages"].values())
    ]


def missing_metrics(rows: list[dict]) -> list[str]:
    """One line per perceptual metric that was asked for and skipped (its weights absent)."""
    lines = {}
    for r in rows:
        for name, line in r.get("skipped", {}).items():
            if name in PERCEPTUAL:
                lines.setdefault(name, line)
    return list(lines.values())


def cell(values: dict | None, shown: list[str] | tuple[str, ...] = ("lpips",)) -> str:
    if not values:
        return "-"
    text = f"{values['psnr']:.2f} / {values['ssim']:.3f}"
    for name in shown:
        value = values.get(name)
        text += " / -" if value is None else f" / {value:.3f}"
    return text


def table(rows: list[dict]) -> str:
    shown = metric_columns(rows)
    unit = " / ".join(["PSNR dB", "SSIM", *(PERCEPTUAL[n] for n in shown)])
    lines = [
        f"| model | set | edges | {' | '.join(COLUMNS.values())} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = " | ".join(cell(r["stages"].get(stage), shown) for stage in COLUMNS)
        where = f"{r['set']} ({r['images']}, {r['image_size']} px)"
        lines.append(f"| {r['model']} | {where} | {r['edges']} | {cells} |")
    note = f"{unit}; PSNR and SSIM higher is better"
    if shown:
        note += f", {' and '.join(PERCEPTUAL[n] for n in shown)} lower is better"
    missing = "".join(f"\n\n{line}" for line in missing_metrics(rows))
    return "\n".join(lines) + f"\n\n({note}.){missing}"


def group_rows(row: dict) -> list[dict]:
    """Rows for a set's sources and held-out styles / sets (``report["groups"]``)."""
    rows = []
    for name, entry in (row.get("groups") or {}).items():
        if name.endswith("(all)") or "/" not in name or entry["heldout"]:
            label = name + (" (held out)" if entry["heldout"] else "")
            rows.append({**row, "set": f"{row['set']}: {label}", **entry, "groups": None})
    return rows


def load_model(path: str, device: str = "cpu") -> Reconstructor:
    """A checkpoint, a bundled model as ``pretrained:<name>``, or a ``.safetensors`` file
    written by :func:`~pirec_lightning.pretrained.write_pretrained`."""
    if path.startswith(PREFIX):
        return Reconstructor.pretrained(path.removeprefix(PREFIX), device=device)
    if path.endswith(".safetensors"):
        return Reconstructor.from_checkpoint_dict(read_pretrained(path=path), path, device)
    return Reconstructor.from_checkpoint(path, device=device)


def evaluation_sets(model: Reconstructor, args: argparse.Namespace) -> dict[str, tuple]:
    """``{set name: (dataset, edge kinds)}`` for ``model``."""
    data = dict(model.data_settings)
    size = int(model.image_size)
    sets = {}
    if data.get("mix") is not None or args.mix:
        test, _ = checkpoint_test_split({**data, "image_size": size}, ["data=mix"])
        if args.mix_count:
            test = Subset(test, spread_indices(len(test), args.mix_count))
        sets["mix test split"] = (test, args.edges)
    if data.get("avatars") is not None or args.avatars:
        test, _ = checkpoint_test_split({**data, "image_size": size}, ["data=avatars"])
        if args.avatars_count:
            test = Subset(test, spread_indices(len(test), args.avatars_count))
        sets["avatars test split"] = (test, args.edges)
    emoji_size = args.emoji_size or size
    emoji, _ = checkpoint_test_split({**data, "image_size": emoji_size}, ["data=emoji"])
    if args.emoji_count:
        emoji = Subset(emoji, spread_indices(len(emoji), args.emoji_count))
    others = [e for e in args.edges if e != "line_art"]  # only the avatars have line art
    sets["emoji test split"] = (emoji, others)
    if args.noto:
        noto = image_source(args.noto, emoji_size)
        picked = np.linspace(0, len(noto) - 1, min(args.noto_count, len(noto)))
        sets["Noto emoji"] = (Subset(noto, np.round(picked).astype(int).tolist()), others)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="[label=]path of a checkpoint, or [label=]pretrained:<name> for a bundled model",
    )
    parser.add_argument("--avatars", action="store_true", help="also the avatars test split")
    parser.add_argument("--mix", action="store_true", help="also the mix test split (data=mix)")
    parser.add_argument(
        "--mix-count", type=int, help="that many mix test items, spread over the split"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--avatars-count", type=int, help="that many avatars test items, spread over the split"
    )
    parser.add_argument(
        "--emoji-size", type=int, help="size of the emoji and Noto sets (default: the model's)"
    )
    parser.add_argument(
        "--emoji-count", type=int, help="that many emoji test items, spread over the split"
    )
    parser.add_argument(
        "--load", action="append", default=[], help="rows written by an earlier --json run"
    )
    parser.add_argument("--noto", help="noto_emoji_128.npz")
    parser.add_argument("--noto-count", type=int, default=512)
    parser.add_argument("--edges", nargs="+", default=list(EDGES), choices=EDGES)
    parser.add_argument(
        "--metrics",
        nargs="*",
        default=list(DEFAULT_METRICS),
        choices=[*PERCEPTUAL, "fid"],
        help="perceptual metrics beside PSNR/SSIM (default: lpips dists; none: --metrics)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--readme", help="rewrite the quality-table block of this Markdown file (docs/quality.md)"
    )
    parser.add_argument("--grids", help="write <prefix>_<edges>.png for the last checkpoint")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    started = time.perf_counter()

    if not args.checkpoint and not args.load:
        parser.error("give --checkpoint and/or --load")
    rows: list[dict] = [row for path in args.load for row in json.loads(Path(path).read_text())]
    for spec in args.checkpoint:
        label, _, path = spec.rpartition("=")
        model = load_model(path, args.device)
        sets = evaluation_sets(model, args)
        grid_set = next(iter(sets))  # the model's own kind of pictures first
        for name, (images, kinds) in sets.items():
            for edges in kinds:
                report, grid = evaluate(
                    model, images, args.batch_size, edges=edges, metrics=args.metrics
                )
                row = {"model": label or path, "set": name, "edges": edges, **report}
                rows.append(row)
                rows += group_rows(row)
                print(
                    json.dumps({k: row[k] for k in ("model", "set", "edges", "stages")}), flush=True
                )
                if args.grids and spec == args.checkpoint[-1] and name == grid_set:
                    Path(args.grids).parent.mkdir(parents=True, exist_ok=True)
                    save_image(grid, f"{args.grids}_{edges}.png")
        for line in report["skipped"].values():
            print(line, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    text = table(rows)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.readme:
        readme = Path(args.readme)
        content = readme.read_text()
        if START not in content or END not in content:
            print(f"error: {readme} has no {START} ... {END} block", file=sys.stderr)
            return 2
        head, rest = content.split(START, 1)
        tail = rest.split(END, 1)[1]
        readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
