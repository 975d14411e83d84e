"""Callbacks that present training in generator steps, the unit users set in the config."""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar


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
