"""A bundled model that accumulates: its history (one row per training run that made its
weights) and the rule by which a candidate replaces it.

The card (``<name>.json``) keeps ``history`` (the rows, oldest first) and ``history_totals``;
``MODEL_CARD.md`` shows them as its ``## History`` section (:func:`history_markdown`). A row:

>>> row = history_row(date="2026-12-04", commit="a9b3132", hardware="one NVIDIA H200",
...                   steps={"generating": 651}, gpu_seconds=414, data="avatars",
...                   losses="L1 + LSGAN", started_from="scratch")
>>> history_totals([row])["steps"]
{'generating': 651}

The replace rule (:data:`REPLACE_RULE`, :func:`compare_quality`) reads two quality tables as
``benchmarks/quality.py --json`` writes them: every row is a held-out set (a test split, or a
set nobody trains on) with one edge style.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "PSNR_TOLERANCE_DB",
    "REPLACE_RULE",
    "STAGES",
    "backfill_row",
    "compare_quality",
    "comparison_markdown",
    "history_markdown",
    "history_row",
    "history_totals",
    "losses_text",
    "with_history",
]

#: generator stages a row counts steps for, in training order
STAGES = ("imitation", "generating", "refinement")
#: how much worse in PSNR (dB) a candidate may be on any one held-out set and still replace
PSNR_TOLERANCE_DB = 0.1
#: the rule, as the card states it
REPLACE_RULE = (
    "A candidate replaces the bundled model only when, on every held-out set and edge style that "
    "both quality tables hold (the final stage's output, the same images), its PSNR is at most "
    f"{PSNR_TOLERANCE_DB} dB below the bundled model's, and its mean LPIPS over those rows is "
    "lower. Where either table has no LPIPS (its weights were not at hand), the mean PSNR over "
    "those rows must be higher instead."
)


def history_row(
    *,
    date: str,
    commit: str,
    hardware: str,
    steps: Mapping[str, int],
    gpu_seconds: float,
    data: str,
    losses: str,
    started_from: str,
    note: str = "",
) -> dict[str, Any]:
    """One training run that made the weights: ``steps`` are the generator steps it trained per
    stage (imitation, generating, refinement), ``gpu_seconds`` the seconds it trained for
    (wall time on the accelerator), ``started_from`` the weights it continued (or ``scratch``)."""
    return {
        "date": date,
        "commit": commit,
        "hardware": hardware,
        "steps": {k: int(steps[k]) for k in STAGES if k in steps},
        "gpu_seconds": round(float(gpu_seconds), 1),
        "data": data,
        "losses": losses,
        "started_from": started_from,
        "note": note,
    }


def history_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Runs, generator steps per stage and seconds, summed over ``rows``."""
    steps: dict[str, int] = {}
    for row in rows:
        for stage in STAGES:
            if stage in row.get("steps", {}):
                steps[stage] = steps.get(stage, 0) + int(row["steps"][stage])
    return {
        "runs": len(rows),
        "steps": steps,
        "gpu_seconds": round(sum(float(r.get("gpu_seconds", 0)) for r in rows), 1),
    }


def backfill_row(card: Mapping[str, Any], date: str, losses: str) -> dict[str, Any]:
    """The first row of a card written before cards kept a history: its commit, hardware, steps,
    wall time and data description (``date`` and ``losses`` are not in such a card)."""
    return history_row(
        date=date,
        commit=str(card.get("commit", "")),
        hardware=str(card.get("hardware", "")),
        steps=card.get("steps", {}),
        gpu_seconds=float(card.get("wall_minutes", 0)) * 60,
        data=str(card.get("data", {}).get("description", "")).split(":", 1)[0].strip("`"),
        losses=losses,
        started_from="scratch",
        note=f"`{card.get('command', '')}`; backfilled from the card",
    )


def losses_text(loss: Mapping[str, Any], vgg_status: str | None = None) -> str:
    """The generator's loss terms of a phase's ``loss`` hyperparameters, in words;
    ``vgg_status`` (the phase's ``hparams.vgg_status``: ``off: <why>`` or the backbone) says
    whether the VGG terms actually ran (``loss.vgg=auto`` without weights trains without them).

    >>> losses_text({"l1": 1.0, "adversarial": 0.1, "gan_type": "lsgan", "vgg": "off"})
    'L1 1, lsgan 0.1, no VGG terms'
    """
    terms = [f"L1 {loss.get('l1', 1.0):g}"]
    if loss.get("adversarial", 0):
        terms.append(f"{loss.get('gan_type', 'lsgan')} {loss['adversarial']:g}")
    vgg = str(loss.get("vgg", "off"))
    ran = vgg != "off" and not str(vgg_status or "").startswith("off")
    if ran and (loss.get("perceptual", 0) or loss.get("style", 0)):
        backbone = vgg_status or vgg
        terms.append(
            f"perceptual {loss.get('perceptual', 0):g} + style {loss.get('style', 0):g} "
            f"({backbone})"
        )
    else:
        terms.append("no VGG terms")
    return ", ".join(terms)


def with_history(card: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``card`` with ``history`` = ``rows`` and their ``history_totals``; every other key kept."""
    out = dict(card)
    out["history"] = [dict(r) for r in rows]
    out["history_totals"] = history_totals(rows)
    return out


def _steps_text(steps: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {int(v):,}" for k, v in steps.items()) or "-"


def history_markdown(card: Mapping[str, Any]) -> str:
    """The card's ``## History`` section: the rows, their totals and the replace rule."""
    rows = card.get("history") or []
    totals = card.get("history_totals") or history_totals(rows)
    lines = [
        "## History",
        "",
        "One row per training run that made these weights, oldest first; each run continued "
        "the weights of the row above it (generator steps per stage; seconds on the accelerator).",
        "",
        "| # | date | commit | hardware | generator steps | seconds | data | losses | from |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(rows, 1):
        lines.append(
            f"| {n} | {row['date']} | `{str(row['commit'])[:10]}` | {row['hardware']} | "
            f"{_steps_text(row['steps'])} | {row['gpu_seconds']:,.0f} | {row['data']} | "
            f"{row['losses']} | {row['started_from']} |"
        )
    lines.append(
        f"| total | {totals['runs']} run{'s' if totals['runs'] != 1 else ''} | | | "
        f"{_steps_text(totals['steps'])} | "
        f"{totals['gpu_seconds']:,.0f} | | | |"
    )
    notes = [f"{n}. {row['note']}" for n, row in enumerate(rows, 1) if row.get("note")]
    if notes:
        lines += ["", "Notes: " + " ".join(notes)]
    lines += ["", f"**Replace rule.** {REPLACE_RULE}"]
    return "\n".join(lines)


def _key(row: Mapping[str, Any]) -> tuple:
    return (row["set"], row["edges"], row["images"], row["image_size"])


def _final(row: Mapping[str, Any]) -> dict[str, float]:
    stages = row.get("stages", {})
    return stages.get("refined") or stages.get("first_stage") or {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def compare_quality(
    candidate: Sequence[Mapping[str, Any]],
    bundled: Sequence[Mapping[str, Any]],
    tolerance_db: float = PSNR_TOLERANCE_DB,
) -> dict[str, Any]:
    """Apply :data:`REPLACE_RULE` to two quality tables (``benchmarks/quality.py --json`` rows).

    Returns:
        ``{"better", "reason", "metric" ("lpips" or "psnr"), "rows"}``; ``rows`` has per shared
        set and edge style both models' final-stage PSNR (and LPIPS) and the difference.
    """
    theirs = {_key(r): _final(r) for r in bundled}
    pairs = []
    for row in candidate:
        if _key(row) not in theirs:
            continue
        mine, other = _final(row), theirs[_key(row)]
        if _number(mine.get("psnr")) is None or _number(other.get("psnr")) is None:
            continue
        pairs.append(
            {
                "set": row["set"],
                "edges": row["edges"],
                "images": row["images"],
                "image_size": row["image_size"],
                "candidate_psnr": float(mine["psnr"]),
                "bundled_psnr": float(other["psnr"]),
                "psnr_delta": float(mine["psnr"]) - float(other["psnr"]),
                "candidate_lpips": _number(mine.get("lpips")),
                "bundled_lpips": _number(other.get("lpips")),
            }
        )
    result: dict[str, Any] = {"rows": pairs, "tolerance_db": tolerance_db, "rule": REPLACE_RULE}
    if not pairs:
        return {**result, "better": False, "metric": None, "reason": "no held-out set in common"}
    worst = min(pairs, key=lambda p: p["psnr_delta"])
    lpips = all(p["candidate_lpips"] is not None and p["bundled_lpips"] is not None for p in pairs)
    if lpips:
        mine_mean = sum(p["candidate_lpips"] for p in pairs) / len(pairs)
        their_mean = sum(p["bundled_lpips"] for p in pairs) / len(pairs)
        wins, metric = mine_mean < their_mean, "lpips"
        mean_text = f"mean LPIPS {mine_mean:.4f} against {their_mean:.4f}"
    else:
        mine_mean = sum(p["candidate_psnr"] for p in pairs) / len(pairs)
        their_mean = sum(p["bundled_psnr"] for p in pairs) / len(pairs)
        wins, metric = mine_mean > their_mean, "psnr"
        mean_text = f"no LPIPS: mean PSNR {mine_mean:.2f} dB against {their_mean:.2f} dB"
    within = worst["psnr_delta"] >= -tolerance_db
    worst_text = (
        f"worst set {worst['set']} / {worst['edges']} {worst['psnr_delta']:+.2f} dB "
        f"(limit -{tolerance_db} dB)"
    )
    better = within and wins
    verdict = "better" if better else "not better"
    reason = f"{verdict} on {len(pairs)} held-out rows: {worst_text}; {mean_text}"
    return {
        **result,
        "better": better,
        "metric": metric,
        "reason": reason,
        "worst_psnr_delta": worst["psnr_delta"],
        "candidate_mean": mine_mean,
        "bundled_mean": their_mean,
    }


def comparison_markdown(verdict: Mapping[str, Any]) -> str:
    """The candidate's and the bundled model's final stage side by side, and the verdict."""
    lpips = any(p["candidate_lpips"] is not None for p in verdict["rows"])
    head = "| set | edges | bundled PSNR | candidate PSNR | difference |"
    rule = "|---|---|---|---|---|"
    if lpips:
        head += " bundled LPIPS | candidate LPIPS |"
        rule += "---|---|"
    lines = [head, rule]
    for p in verdict["rows"]:
        line = (
            f"| {p['set']} ({p['images']}, {p['image_size']} px) | {p['edges']} | "
            f"{p['bundled_psnr']:.2f} | {p['candidate_psnr']:.2f} | {p['psnr_delta']:+.2f} dB |"
        )
        if lpips:
            line += "".join(
                f" {v:.3f} |" if v is not None else " - |"
                for v in (p["bundled_lpips"], p["candidate_lpips"])
            )
        lines.append(line)
    lines += ["", f"**The candidate is {verdict['reason']}.**"]
    return "\n".join(lines)
