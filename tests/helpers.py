"""Test-only callbacks, instantiated through the Hydra config like any user callback."""

from __future__ import annotations

from collections import Counter

import pytorch_lightning as pl

#: training batches seen per phase name (reset by the tests)
BATCHES: Counter[str] = Counter()


class CountBatches(pl.Callback):
    """Counts training batches per phase in :data:`BATCHES`."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        BATCHES[pl_module.name] += 1


class InterruptAt(pl.Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) after ``step`` generator steps of ``phase``."""

    def __init__(self, phase: str, step: int) -> None:
        self.phase, self.step = phase, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.name == self.phase and pl_module.generator_step >= self.step:
            raise KeyboardInterrupt


class PoisonBatches(pl.Callback):
    """Puts a NaN into the ground truth of training batches ``from_batch`` .. ``to_batch``
    (counted from 0 in this run, inclusive; None: to the end), as a numeric fault would."""

    def __init__(self, from_batch: int, to_batch: int | None = None) -> None:
        self.from_batch, self.to_batch, self.seen = from_batch, to_batch, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen >= self.from_batch and (self.to_batch is None or self.seen <= self.to_batch):
            batch["image"][0, 0, 0, 0] = float("nan")
        self.seen += 1
