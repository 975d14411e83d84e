"""The package's own callbacks: the progress bar in generator steps (the unit users set in the
config), the final ``last.ckpt`` and the validation at the end of a run."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import RichProgressBar

__all__ = ["FinalCheckpoint", "FinalValidation", "PIRECProgressBar", "with_progress_bar"]

log = logging.getLogger(__name__)


def _live_console() -> bool:
    """Whether rich can draw a live bar where the output goes: a terminal (not a dumb one), or
    a Jupyter notebook. Asked each time: the output may be redirected after rich's console was
    made."""
    from rich import get_console  # Lightning's RichProgressBar needs rich already

    console = get_console()
    return (console.is_terminal and not console.is_dumb_terminal) or console.is_jupyter


class PIRECProgressBar(RichProgressBar):
    """Training progress in generator steps: a rich bar on a terminal, plain lines elsewhere.

    Lightning's ``max_steps`` counts both optimizers of a GAN phase; this bar divides by the
    phase's ``optimizer_steps_per_batch`` so it ends at the ``trainer.max_steps`` you asked for.

    When the output is not a terminal (``python train.py ... > log``, a pipe, a batch job) a
    live bar cannot be drawn: rich would leave one frozen bar at the end. There it logs a plain
    line instead, after the first step, every ``every_n_steps`` generator steps and every
    ``every_seconds`` seconds (either may be None), and after the last step::

        imitation step 120/2000, 2.1 steps/s, 0:14:55 left, g_loss 0.4312, d_loss 0.2480

    Args:
        plain: True: plain lines always; False: the rich bar always; None (default): plain
            lines when the output is not a terminal or a notebook.
        every_n_steps: a plain line every this many generator steps (None: by time only).
        every_seconds: a plain line when this many seconds passed since the last one (None: by
            steps only).
        **kwargs: :class:`~pytorch_lightning.callbacks.RichProgressBar`'s own.
    """

    def __init__(
        self,
        plain: bool | None = None,
        every_n_steps: int | None = None,
        every_seconds: float | None = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if every_n_steps is not None and int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be 1 or more (or null), got {every_n_steps}")
        if every_seconds is not None and float(every_seconds) <= 0:
            raise ValueError(f"every_seconds must be above 0 (or null), got {every_seconds}")
        self.plain = plain
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.every_seconds = None if every_seconds is None else float(every_seconds)
        #: whether this run shows plain lines (decided at setup; the rich bar stays off then)
        self.plain_lines = bool(plain)
        self._started = 0.0  # monotonic time of the first step of this fit
        self._first_step = 0  # the generator step this fit started from (a resume: not 0)
        self._last_line: tuple[int, float] | None = None  # (step, time) of the last line

    # ------------------------------------------------------------------- plain or rich, where
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.plain_lines = not _live_console() if self.plain is None else self.plain

    @property
    def is_enabled(self) -> bool:
        """The rich bar's switch: off on other ranks, and off while plain lines are shown."""
        return super().is_enabled and not self.plain_lines

    def _says_lines(self, trainer: pl.Trainer) -> bool:
        # _enabled: Lightning disables the bar on every rank but the first
        return self.plain_lines and self._enabled and trainer.is_global_zero

    # ------------------------------------------------------------------------- plain lines
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._started = time.monotonic()
        self._first_step = self._generator_step(trainer)
        self._last_line = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self._says_lines(trainer):
            return
        step, now = self._generator_step(trainer), time.monotonic()
        total = self._total_steps(trainer)
        due = (
            self._last_line is None
            or (total is not None and step >= total)
            or trainer.should_stop
            or (self.every_n_steps is not None and step % self.every_n_steps == 0)
            or (self.every_seconds is not None and now - self._last_line[1] >= self.every_seconds)
        )
        if due and (self._last_line is None or step != self._last_line[0]):
            self._say(self._line(trainer, pl_module, step, total, now))
            self._last_line = (step, now)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run stopped early (max_time, a signal, bad steps) ends with where it got to
        step = self._generator_step(trainer)
        if self._says_lines(trainer) and self._last_line and step != self._last_line[0]:
            now = time.monotonic()
            self._say(self._line(trainer, pl_module, step, self._total_steps(trainer), now))
            self._last_line = (step, now)
        super().on_train_end(trainer, pl_module)

    @staticmethod
    def _per_batch(trainer: pl.Trainer) -> int:
        return max(1, int(getattr(trainer.lightning_module, "optimizer_steps_per_batch", 1)))

    def _generator_step(self, trainer: pl.Trainer) -> int:
        return int(trainer.global_step) // self._per_batch(trainer)

    def _total_steps(self, trainer: pl.Trainer) -> int | None:
        """The generator step training ends at: ``trainer.max_steps``, or the epochs' batches;
        None when neither bounds it."""
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return int(trainer.max_steps) // self._per_batch(trainer)
        batches = trainer.num_training_batches
        if trainer.max_epochs is not None and trainer.max_epochs > 0 and batches != float("inf"):
            return int(trainer.max_epochs * batches)
        return None

    def _line(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        step: int,
        total: int | None,
        now: float,
    ) -> str:
        name = getattr(pl_module, "name", "train")
        parts = [f"{name} step {step}/{total}" if total else f"{name} step {step}"]
        elapsed = now - self._started
        rate = (step - self._first_step) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.3g} steps/s")
            if total:
                left = round(max(0, total - step) / rate)
                parts.append(f"{timedelta(seconds=left)} left")
        metrics = trainer.callback_metrics
        for key, shown in (("g_loss", "g_loss"), ("train/d_loss", "d_loss"), ("val_psnr", None)):
            if key in metrics:
                value = float(metrics[key])  # a device tensor: read once per line
                parts.append(f"{shown} {value:.4f}" if shown else f"{key} {value:.2f}")
        return ", ".join(parts)

    @staticmethod
    def _say(line: str) -> None:
        """The line in the run's log (Hydra's console and file handlers), or printed where
        logging is not set up to show it."""
        if log.isEnabledFor(logging.INFO) and log.hasHandlers():
            log.info(line)
        else:
            print(line, flush=True)

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
