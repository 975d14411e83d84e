"""What a run says about its data: images found, skipped and per split, once, in the log and
the logged hyperparameters; and one line when the split leaves nothing to train or validate on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pirec_lightning.data.scan import ScanReport
from pirec_lightning.errors import DataError

__all__ = ["check_splits", "log_data_summary", "report_late_failures"]

log = logging.getLogger(__name__)


def check_splits(
    files: dict[str, list[Path]],
    where: str,
    report: ScanReport,
    split: Sequence[float],
) -> dict[str, int]:
    """The data summary of a run; fails when the train or val split is empty.

    Args:
        files: the ``train``/``val``/``test`` file lists.
        where: the folder (or "the embedded emoji") for messages.
        report: the folder's scan (for the embedded emoji: all of them as usable).
        split: the configured fractions, for the message.

    Returns:
        ``{"images_found", "images_skipped", "images_small", "images_train", "images_val",
        "images_test"}`` (``images_small``: usable but smaller than ``data.image_size``).

    Raises:
        DataError: an empty train or val split, with the counts and what to do.
    """
    usable = sum(len(v) for v in files.values())
    summary = {
        "images_found": report.found,
        "images_skipped": len(report.skipped),
        "images_small": report.small,
        **{f"images_{name}": len(v) for name, v in files.items()},
    }
    for name in ("train", "val"):
        if not files[name]:
            fractions = ",".join(f"{float(f):g}" for f in split)
            counts = ", ".join(f"{k} {len(v)}" for k, v in files.items())
            raise DataError(
                f"the {name} split of {where} is empty: {summary['images_found']} image files "
                f"found, {usable} decodable, data.split=[{fractions}] gives {counts}; add "
                "images (the split is by file, so a few dozen at least) or change data.split, "
                "e.g. data.split=[0.5,0.5,0]"
            )
    return summary


def log_data_summary(trainer: Any, summary: dict[str, int], where: str) -> None:
    """Log the summary once and record it with the hyperparameters of every logger."""
    log.info(
        "data: %d images found in %s, %d skipped, %d upscaled (smaller than data.image_size); "
        "train %d, val %d, test %d",
        summary["images_found"],
        where,
        summary["images_skipped"],
        summary["images_small"],
        summary["images_train"],
        summary["images_val"],
        summary["images_test"],
    )
    for logger in getattr(trainer, "loggers", None) or []:
        logger.log_hyperparams({f"data/{k}": v for k, v in summary.items()})


def report_late_failures(trainer: Any, count: int) -> None:
    """Files that passed the scan but failed to decode during training (replaced by other
    samples), counted across DataLoader workers: said once per run."""
    if count <= 0:
        return
    log.warning(
        "%d image decodes failed during training (files that went bad after the scan); each "
        "was replaced by another image",
        count,
    )
    for logger in getattr(trainer, "loggers", None) or []:
        logger.log_hyperparams({"data/images_failed_during_training": count})
