"""The package's own callbacks: the progress bar in generator steps (the unit users set in the
config) and the final ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import RichProgressBar

__all__ = ["FinalCheckpoint", "PIRECProgressBar", "with_progress_bar"]


class PIRECProgressBar(RichProgressBar):
    """Rich progress bar whose training total and description count generator steps.

    Lightning's ``max_steps`` counts both optimizers of a GAN phase; this bar divides by the
    phase's ``optimizer_steps_per_batch`` so it ends at the ``trainer.max_steps`` you asked for.
    """

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        per_batch = getattr(trainer.lightning_module, "optimizer_steps_per_batch", 1)
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            remaining = (trainer.max_steps - trainer.global_step) // per_batch
            return min(trainer.num_training_batches, remaining)
        return trainer.num_training_batches

    def _get_train_description(self, current_epoch: int) -> str:
        name = getattr(self.trainer.lightning_module, "name", "train")
        return f"{name} · epoch {current_epoch}"


class FinalCheckpoint(pl.Callback):
    """Make ``last.ckpt`` hold the final weights: Lightning skips the end-of-training save when
    an interval save already happened, even if steps were taken since. A callback, so it runs in
    every training process (with spawned DDP the calling process does not train)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        if callback is None or callback.dirpath is None:
            return
        path = Path(callback.dirpath) / "last.ckpt"
        stale = trainer.global_step != getattr(callback, "_last_global_step_saved", -1)
        # saving is collective: every rank follows rank 0's view of the file
        if trainer.strategy.broadcast(stale or not path.exists()):
            trainer.save_checkpoint(path)


def with_progress_bar(callbacks: list[Any], cfg: DictConfig) -> list[Any]:
    """Add the generator-step progress bar when the config has none and the bar is on, so
    Lightning's default (which shows "Epoch 0/-2") never appears."""
    wants_bar = cfg.trainer.get("enable_progress_bar", True) is not False
    if wants_bar and not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
        return [*callbacks, PIRECProgressBar()]
    return callbacks
