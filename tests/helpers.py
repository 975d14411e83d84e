"""Test-only callbacks, instantiated through the Hydra config like any user callback, and a quiet
Trainer for tests that drive a phase module directly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]


def run_train(
    *args: str, cwd: Path = ROOT, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """``train.py args`` in a fresh process, offline, output captured; ``env`` adds variables."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env={**os.environ, "PIREC_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def quiet_trainer(**options: object) -> pl.Trainer:
    """A Trainer without logger, checkpoints, progress bar or model summary; ``options`` on top."""
    quiet = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**{**quiet, **options})


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


class RecordRank(pl.Callback):
    """Writes ``<folder>/<phase>_rank<r>.pt`` in every training process: the weights of every
    network, the preprocessing generator's state after the first and the last batch, and how many
    gradient elements each DDP-wrapped network all-reduced (counted by a DDP comm hook that
    all-reduces as DDP's default does)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_start(self, trainer, pl_module) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        self.reduced: Counter[str] = Counter()
        self.first_state = None
        self.steps = 0

        def counting_hook(name, bucket):
            self.reduced[name] += bucket.buffer().numel()
            return default_hooks.allreduce_hook(None, bucket)

        for name, wrapper in pl_module._ddp_wrappers.items():
            wrapper.register_comm_hook(state=name, hook=counting_hook)

    def _draw_state(self, trainer):
        generators = trainer.datamodule._train_generators
        return next(iter(generators.values())).get_state().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.first_state is None:
            self.first_state = self._draw_state(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        import torch

        record = {
            "state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "first_state": self.first_state,
            "last_state": self._draw_state(trainer),
            "reduced": dict(self.reduced),
            "steps": self.steps,
            "world_size": trainer.world_size,
            "cluster_environment": type(trainer.strategy.cluster_environment).__name__,
            # each rank validated its own shard: equal values mean the metric was reduced
            "val_psnr": float(trainer.callback_metrics["val/psnr"]),
        }
        path = Path(self.folder) / f"{pl_module.name}_rank{trainer.global_rank}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(record, path)


class PoisonBatches(pl.Callback):
    """Puts a NaN into the ground truth of training batches ``from_batch`` .. ``to_batch``
    (counted from 0 in this run, inclusive; None: to the end), as a numeric fault would."""

    def __init__(self, from_batch: int, to_batch: int | None = None) -> None:
        self.from_batch, self.to_batch, self.seen = from_batch, to_batch, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen >= self.from_batch and (self.to_batch is None or self.seen <= self.to_batch):
            batch["image"][0, 0, 0, 0] = float("nan")
        self.seen += 1
