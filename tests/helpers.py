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
