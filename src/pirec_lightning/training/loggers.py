"""Closing logger runs between phases and jobs."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import WandbLogger

__all__ = ["finish_wandb"]


def finish_wandb(loggers: list[Any]) -> None:
    """Close W&B runs, so the next phase of ``phase=all`` (or the next job of a multirun in the
    same process) starts its own run."""

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
