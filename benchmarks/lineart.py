"""Line-art figures of the Iconify sets (docs/quality.md, "The illustration mix").

For each set, ``--count`` icons drawn at random (``--seed``) are rendered fresh at ``--size`` px
and their line art is separated with each rule for thick ink (``outline``, ``thin``; the other
rules are the set's own); prints the medians of
:func:`pirec_lightning.data.lineart.line_art_figures` (share, recall, Canny recall, thickness,
blob), the 10th percentile of the recall and the share of icons with any ink, one JSON line per
set and rule, and a Markdown table at the end.

    python benchmarks/lineart.py --count 100 --json figures.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from pirec_lightning.data.iconify import icon_svg
from pirec_lightning.data.icons import ICON_SETS, icon_set
from pirec_lightning.data.lineart import THICK_RULES, line_art, line_art_figures, render_rgb


def set_figures(name: str, count: int, size: int, seed: int, thick: str) -> dict[str, float]:
    """Median figures of ``count`` icons of set ``name`` with the rule ``thick``."""
    loaded = icon_set(name)
    rules = dataclasses.replace(loaded.rules, thick=thick)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(loaded.names), min(count, len(loaded.names)), replace=False)
    started, figures = time.perf_counter(), []
    for index in pick:
        svg = icon_svg(loaded.data, loaded.names[index])
        figures.append(line_art_figures(render_rgb(svg, size), line_art(svg, size, rules)))
    result = {k: float(np.median([f[k] for f in figures])) for k in figures[0]}
    result["p10_recall"] = float(np.percentile([f["recall"] for f in figures], 10))
    result["with_ink"] = float(np.mean([f["share"] > 0.005 for f in figures]))
    result["ms_per_icon"] = 1000 * (time.perf_counter() - started) / len(pick)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(ICON_SETS))
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = {}
    for name in args.sets:
        for thick in THICK_RULES:
            rows[f"{name}/{thick}"] = set_figures(name, args.count, args.size, args.seed, thick)
            print(json.dumps({"set": name, "thick": thick, **rows[f"{name}/{thick}"]}), flush=True)
    print("\n| set | thick ink | used | share | recall | Canny recall | thickness | with ink |")
    print("|---|---|---|---|---|---|---|---|")
    for key, f in rows.items():
        name, thick = key.split("/")
        used = "yes" if ICON_SETS[name].rules.thick == thick else ""
        print(
            f"| `{name}` | {thick} | {used} | {100 * f['share']:.1f} % | {f['recall']:.3f} | "
            f"{f['edge_recall']:.3f} | {f['thickness']:.0f} px | {100 * f['with_ink']:.0f} % |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
