"""Bundle a finished ``phase=all`` run as a model inside the package (what ``make pretrained`` runs
after training).

Writes into ``src/pirec_lightning/pretrained/``:

- ``<name>.safetensors``: the refinement checkpoint's generators and discriminator in fp16, with
  the settings that rebuild them (:func:`pirec_lightning.pretrained.write_pretrained`);
- ``examples/``: a few line-art pairs (``N_e.png`` white lines on black, ``N_c.png`` colour
  domain) of the avatars test split's held-out line-art style, offered by ``pirec app``;
- ``<name>.json`` and ``MODEL_CARD.md``: the card: data and licences, command, config, commit,
  steps, wall time, hardware, the quality table (``benchmarks/quality.py`` on the bundled file)
  and the figures of a small fixed check set that ``tests/test_pretrained_bundled.py`` recomputes.

    python scripts/make_pretrained.py --run runs/pretrained --wall-seconds 5400 \\
        --command "make pretrained" --noto ../shared/data/noto_emoji_128.npz

A candidate that continues the bundled model (``scripts/gpu_round.py``) is written elsewhere
(``--out-dir``), next to the bundled model's figures on the same sets (``--compare``), with the
bundled card's history and this run's row (``--continues``, ``--history-row``): see the card's
``## History`` and its replace rule (:mod:`pirec_lightning.pretrained.history`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from pirec_lightning import pretrained
from pirec_lightning.checkpoints import read_checkpoint_key
from pirec_lightning.data import PIRECDataModule
from pirec_lightning.data.avatars import attribution_markdown, avatar_styles
from pirec_lightning.data.mix import data_attribution
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import evaluate
from pirec_lightning.pretrained.history import (
    compare_quality,
    comparison_markdown,
    history_markdown,
    history_row,
    losses_text,
    with_history,
)

ROOT = Path(__file__).resolve().parents[1]
#: the fixed set whose figures the card records and the test recomputes
CHECK = {"split": "test", "style": "lorelei", "count": 16, "edges": "line_art", "seed": 0}


def check_set(model: Reconstructor, count: int = CHECK["count"]) -> Subset:
    """The first ``count`` items of the avatars test split in the held-out line-art style."""
    settings = {k: v for k, v in model.data_settings.items() if k != "outputs"}
    dataset = PIRECDataModule(**settings).avatar_dataset(CHECK["split"])
    picked = [i for i, (style, _) in enumerate(dataset.items) if style == CHECK["style"]]
    return Subset(dataset, picked[:count])


def check_figures(model: Reconstructor) -> dict[str, float]:
    """PSNR / SSIM of each stage on :func:`check_set` with its line art (what the card keeps);
    empty when the model's data has no such items (a tiny test model's few avatars)."""
    items = check_set(model)
    if len(items) == 0:
        return {}
    report, _ = evaluate(model, items, 16, seed=CHECK["seed"], edges=CHECK["edges"])
    return {
        f"{stage}_{metric}": round(float(value), 4)
        for stage, values in report["stages"].items()
        for metric, value in values.items()
        if metric in ("psnr", "ssim")
    }


def mix_text(data: dict) -> str:
    """How the card's data description starts: ``data=avatars``, or the mix and its sources."""
    if data.get("mix") is None:
        return "`data=avatars`: "
    icons = data.get("icons") or {}
    weights = ", ".join(f"{k} {v:g}" for k, v in (data["mix"].get("weights") or {}).items())
    return (
        f"`data=mix` (training draws {weights}): the Iconify sets "
        f"({', '.join(icons.get('heldout_sets') or [])} held out), the embedded emoji and "
    )


def run_quality(argv: list[str]) -> str:
    """``benchmarks/quality.py`` in this process (no second start-up), its printed table."""
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = quality.main(argv)
    if status:
        raise SystemExit(f"benchmarks/quality.py {' '.join(argv)} exited with {status}")
    return printed.getvalue()


def write_examples(model: Reconstructor, folder: Path) -> list[str]:
    """The bundled model's example pairs, as ``scripts/make_examples.py`` picks and writes them
    (colourful line-art avatars of the test split), so both scripts write the same examples."""
    spec = importlib.util.spec_from_file_location(
        "make_examples", ROOT / "scripts" / "make_examples.py"
    )
    make_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_examples)
    return make_examples.write_examples(model, folder)


def steps_of(run: Path) -> dict[str, int]:
    """Generator steps each phase of ``run`` trained (its ``last.ckpt``)."""
    steps = {}
    for phase in ("imitation", "generating", "refinement"):
        ckpt = run / phase / "checkpoints" / "last.ckpt"
        if ckpt.is_file():
            steps[phase] = int(read_checkpoint_key(ckpt, "global_step", 0)) // 2
    return steps


def card_markdown(card: dict) -> str:
    """MODEL_CARD.md from the card's JSON (with ``## History`` when it keeps one, and the
    comparison with the bundled model when it is a candidate)."""
    quality = card["quality_table"]
    steps_note = "(generator steps" + (", all runs: see History)" if card.get("history") else ")")
    lines = [
        f"# {card['name']}",
        "",
        f"{card['summary']}",
        "",
        "| | |",
        "|---|---|",
        f"| networks | {card['architecture']} |",
        f"| file | `{card['file']}`, {card['bytes'] / 1e6:.1f} MB, {card['parameters']:,} "
        "values in fp16 (safetensors) |",
        f"| trained by | `{card['command']}` (`experiment={card['experiment']}`) |",
        f"| commit | `{card['commit']}` |",
        f"| steps | {', '.join(f'{k} {v}' for k, v in card['steps'].items())} {steps_note} |",
        f"| wall time | {card['wall_minutes']} minutes (the last run) |",
        f"| hardware | {card['hardware']} |",
        "",
        "## Data",
        "",
        card["data"]["description"],
        "",
        card["data"]["attribution"],
        "",
        "## Quality",
        "",
        "`benchmarks/quality.py` on the bundled file (the evaluation settings; the avatars test "
        "split holds the styles `lorelei` and `personas`, which training never sees):",
        "",
        quality,
        "",
        f"Check set (recomputed by the tests): {card['check']['set']}: "
        + ", ".join(f"{k} {v}" for k, v in card["check"]["figures"].items()),
        "",
    ]
    if card.get("comparison"):
        lines += [
            "## Against the bundled model",
            "",
            f"The final stage of this candidate and of `{card['comparison']['against']}` on the "
            "same held-out sets (`benchmarks/quality.py`, one run for both):",
            "",
            comparison_markdown(card["comparison"]),
            "",
        ]
    if card.get("history"):
        lines += [history_markdown(card), ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from pirec_lightning.inference import Reconstructor",
        "",
        f'rec = Reconstructor.pretrained("{card["name"]}")',
        "```",
        "",
        f"`pirec reconstruct --model {card['name']} ...`, `pirec app` (the default model), "
        f"`python train.py ... init_from=pretrained:{card['name']}` (fine-tuning).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="the phase=all run dir")
    source.add_argument(
        "--weights",
        help="a .safetensors file already written by write_pretrained (a run trained elsewhere, "
        "e.g. on a GPU machine); give --steps then",
    )
    parser.add_argument("--experiment", help="default: the run's experiment= override, or sketch")
    parser.add_argument("--steps", help="with --weights: imitation=N,generating=N,refinement=N")
    parser.add_argument(
        "--avatars-count", type=int, default=200, help="avatars test items in the quality table"
    )
    parser.add_argument("--name", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--wall-seconds", type=float, required=True)
    parser.add_argument("--command", default="make pretrained")
    parser.add_argument("--hardware", default=None, help="default: this machine's CPU or GPU")
    parser.add_argument("--commit", default=None, help="default: the run's .commit file or HEAD")
    parser.add_argument("--noto", help="noto_emoji_128.npz, for the quality table")
    parser.add_argument("--emoji-size", type=int, default=64)
    parser.add_argument("--noto-count", type=int, default=512, help="Noto images (with --noto)")
    parser.add_argument("--emoji-count", type=int, help="emoji test items (default: all)")
    parser.add_argument("--mix", action="store_true", help="also the mix test split")
    parser.add_argument("--mix-count", type=int, help="mix test items (default: all)")
    parser.add_argument("--device", default="cpu", help="where the quality table is computed")
    parser.add_argument(
        "--out-dir",
        default=str(pretrained.MODELS_DIR),
        help="where the files go (default: into the package, replacing the bundled model)",
    )
    parser.add_argument(
        "--compare",
        metavar="[LABEL=]PATH",
        help="a model to evaluate on the same sets (pretrained:<name> or a .safetensors): its "
        "final stage side by side with this one's and the replace rule's verdict",
    )
    parser.add_argument(
        "--continues", help="the card (JSON) of the model this run continued: its history is kept"
    )
    parser.add_argument("--history-row", help="a JSON file: this run's history row")
    parser.add_argument("--config-file", help="the run's config to record (default: the run's)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    into_package = out_dir.resolve() == pretrained.MODELS_DIR.resolve()
    out = out_dir / f"{args.name}.safetensors"
    if args.run is not None:
        run = Path(args.run).expanduser()
        refinement = run / "refinement" / "checkpoints" / "last.ckpt"
        if not refinement.is_file():
            print(f"error: {refinement} does not exist: train the run first", file=sys.stderr)
            return 2
        written = pretrained.write_pretrained(refinement, out)
        steps = steps_of(run)
    else:
        run = Path(args.weights).expanduser().parent
        if Path(args.weights).expanduser().resolve() != out.resolve():
            shutil.copyfile(args.weights, out)
        state = pretrained.read_pretrained(path=out)["state_dict"]
        written = {"bytes": out.stat().st_size, "tensors": len(state)}
        written["parameters"] = sum(v.numel() for v in state.values())
        steps = {k: int(v) for k, v in (p.split("=") for p in (args.steps or "").split(",") if p)}
    saved = pretrained.read_pretrained(path=out)
    model = Reconstructor.from_checkpoint_dict(saved, out, device="cpu")
    card_file = out.with_suffix(".json")
    continued = json.loads(Path(args.continues).read_text()) if args.continues else {}
    previous = json.loads(card_file.read_text()) if card_file.is_file() else continued
    if into_package:
        examples = write_examples(model, pretrained.EXAMPLES_DIR)
    else:  # a candidate: the package's examples stay as they are
        examples = previous.get("examples", [])

    labels = [args.name]
    with tempfile.TemporaryDirectory() as folder:
        rows_file = Path(folder) / "rows.json"
        command = ["--checkpoint", f"{args.name}={out}", "--device", args.device]
        if args.compare:
            label, _, path = args.compare.rpartition("=")
            label = label or Path(path.removeprefix(pretrained.PREFIX)).stem
            if label == args.name:
                label = f"{label} (bundled)"
            labels.append(label)
            command += ["--checkpoint", f"{label}={path}"]
        command += ["--emoji-size", str(args.emoji_size), "--json", str(rows_file)]
        command += ["--avatars-count", str(args.avatars_count)]
        command += ["--emoji-count", str(args.emoji_count)] if args.emoji_count else []
        command += ["--mix"] if args.mix else []
        command += ["--mix-count", str(args.mix_count)] if args.mix and args.mix_count else []
        command += ["--noto", args.noto, "--noto-count", str(args.noto_count)] if args.noto else []
        shown = run_quality(command)
        every_row = json.loads(rows_file.read_text())
    rows = [r for r in every_row if r["model"] == args.name]
    table = shown[shown.index("| model |") :].strip()
    comparison = None
    if args.compare:
        theirs = [r for r in every_row if r["model"] == labels[1]]
        comparison = {"against": labels[1], **compare_quality(rows, theirs)}
        comparison["bundled_quality"] = theirs  # gpu_round.py --apply checks the rule again

    config = (
        Path(args.config_file).read_text()
        if args.config_file
        else (run / ".hydra" / "config.yaml").read_text()
        if (run / ".hydra").is_dir()
        else json.dumps(
            {"model": saved["hyper_parameters"], "data": saved["datamodule_hyper_parameters"]}
        )
    )
    overrides = run / ".hydra" / "overrides.yaml"
    experiment = args.experiment or "sketch"
    if overrides.is_file() and args.experiment is None:
        for line in overrides.read_text().splitlines():
            if "experiment=" in line:
                experiment = line.split("experiment=", 1)[1].strip()
    commit_file = run.parent / f"{run.name}.commit"
    commit = args.commit or (
        commit_file.read_text().strip()
        if commit_file.is_file()
        else subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    )
    hardware = args.hardware or (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    hparams = saved["hyper_parameters"]["model"]
    generator = hparams["generator"]
    data = model.data_settings
    styles = avatar_styles((data.get("avatars") or {}).get("styles"))
    held = (data.get("avatars") or {}).get("heldout_styles") or []
    card = {
        "name": args.name,
        # what the model is for and not for (pretrained.model_summary, shown by `pirec app`):
        # written by hand in the card, so a regenerated card keeps the one it had
        "summary": previous.get("summary")
        or (
            "PI-REC's two stages (generating, refinement) at 128 px, trained on the DiceBear "
            "avatars with the artists' own line art, drawn-lines restyling and Canny edges: "
            "a model for sketches (lines plus flat colours)."
        ),
        "file": out.name,
        "bytes": written["bytes"],
        "parameters": written["parameters"],
        "architecture": (
            f"generator {generator['base_channels']} base channels, {generator['res_blocks']} "
            f"residual blocks (x2 stages); discriminator "
            f"{hparams['discriminator']['base_channels']} base channels"
        ),
        "command": args.command,
        "experiment": experiment,
        "config": config,
        "commit": commit,
        "steps": steps,
        "wall_minutes": round(args.wall_seconds / 60, 1),
        "hardware": hardware,
        "data": {
            "description": mix_text(data)
            + (
                f"{(data.get('avatars') or {}).get('count', 20000)} DiceBear "
                f"avatars at {data.get('image_size')} px from {len(styles)} styles; "
                f"{', '.join(held)} held out of training (val/test only). Line art for "
                f"{sum(s.has_line_art for s in styles)} styles. Training edge inputs: "
                f"line art {data['confusion'].get('line_art')}, drawn-lines restyling "
                f"{data['confusion'].get('drawn_edges')}, otherwise Canny."
            ),
            "styles": [
                {
                    "name": s.name,
                    "creator": s.creator,
                    "license": s.license,
                    "line_art": s.has_line_art,
                    "held_out": s.name.removesuffix("-neutral") in held,
                }
                for s in styles
            ],
            "attribution": (
                data_attribution(data)  # the emoji, the avatar styles and the icon sets
                if data.get("mix") is not None or data.get("icons") is not None
                else attribution_markdown([s.name for s in styles])
            ),
        },
        "quality": rows,
        "quality_table": table,
        "examples": examples,
        "check": {
            "set": (
                f"the first {CHECK['count']} `{CHECK['style']}` items of the avatars "
                f"{CHECK['split']} split, {CHECK['edges']} edges, seed {CHECK['seed']}"
            ),
            **CHECK,
            "figures": check_figures(model),
        },
    }
    if comparison is not None:
        card["comparison"] = comparison
    row = (
        json.loads(Path(args.history_row).read_text())
        if args.history_row
        else history_row(
            date=time.strftime("%Y-%m-%d", time.gmtime()),
            commit=commit,
            hardware=hardware,
            steps=steps,
            gpu_seconds=args.wall_seconds,
            data=card["data"]["description"].split(":", 1)[0].strip("`"),
            losses=losses_text(
                saved["hyper_parameters"].get("loss") or {},
                saved["hyper_parameters"].get("vgg_status"),
            ),
            started_from=args.continues or "scratch",
            note=f"`{args.command}`",
        )
    )
    history = [*continued.get("history", []), row] if args.continues else [row]
    # keys of the card this one replaces that this script does not write are kept
    card = with_history({**previous, **card}, history)
    if args.continues:  # the weights hold every run's steps
        card["steps"] = card["history_totals"]["steps"]
    if comparison is None:
        card.pop("comparison", None)
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(card_markdown(card))
    print(f"wrote {out} ({written['bytes'] / 1e6:.1f} MB), its card and {len(examples)} examples")
    print(table)
    if comparison is not None:
        print(comparison_markdown(comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
