"""The package's own callbacks: the progress bar in generator steps (the unit users set in the
config), the final ``last.ckpt`` and the validation at the end of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import RichProgressBar

__all__ = ["FinalCheckpoint", "FinalValidation", "PIRECProgressBar", "with_progress_bar"]


class PIRECProgressBar(RichProgressBar):
    """Rich progress bar whose training total and description count generator steps.

    Lightning's ``max_steps`` counts both optimizers of a GAN phase; this bar divides by the
    phase's ``optimizer_steps_per_batch`` so it ends at the ``trainer.max_steps`` you asked for.
    """

    @property
    def total_train_batches(self) -> int | float:
        """The batch of this epoch at which training ends: the epoch's end, or the batch that
        reaches ``max_steps`` (counted from where the epoch is now, so a run resumed mid-epoch
        shows 6/6, not 6/1)."""
        trainer = self.trainer
        per_batch = getattr(trainer.lightning_module, "optimizer_steps_per_batch", 1)
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            remaining = (trainer.max_steps - trainer.global_step) // per_batch
            # batches of this epoch seen so far, the current one included (as global_step is)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            return min(trainer.num_training_batches, done + remaining)
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
            # a full checkpoint (optimizers, loops), as the interval saves: resumable
            trainer.save_checkpoint(path, weights_only=False)


class FinalValidation(pl.Callback):
    """Validate once more on the step that ends training when the validation interval would
    not: a run shorter than ``trainer.val_check_interval`` (or ending between two validations)
    still ends with its final metrics. Lightning validates the batch on which training is asked
    to stop, so this only asks it to stop there (it stops there anyway)."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        limit = trainer.max_steps
        if limit is not None and limit > 0 and trainer.global_step >= limit:
            trainer.should_stop = True


def with_progress_bar(callbacks: list[Any], cfg: DictConfig) -> list[Any]:
    """Add the generator-step progress bar when the config has none and the bar is on, so
    Lightning's default (which shows "Epoch 0/-2") never appears."""
    wants_bar = cfg.trainer.get("enable_progress_bar", True) is not False
    if wants_bar and not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
        return [*callbacks, PIRECProgressBar()]
    return callbacks
