"""One phase trained end to end: checks, data, weights handed over, fit, finished marking."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from pirec_lightning.config import check_sources, validate_config
from pirec_lightning.errors import RunInterrupted
from pirec_lightning.phases import init_from_checkpoint
from pirec_lightning.phases.handover import read_init_from
from pirec_lightning.training.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_phase,
    build_trainer,
)
from pirec_lightning.training.console import (
    generator_step_messages,
    note_overlays,
    quiet_lightning_tips,
)
from pirec_lightning.training.distributed import global_rank
from pirec_lightning.training.resume import (
    EXIT_CODES,
    check_resume_checkpoint,
    finish_phase,
    interruption,
    mark_finished,
    resume_run_dir,
)
from pirec_lightning.training.rundir import hold_run_dir

__all__ = ["train_phase"]

log = logging.getLogger("pirec_lightning.train")


def _last_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if callback is None or callback.dirpath is None:
        return None
    path = Path(callback.dirpath) / "last.ckpt"
    return str(path) if path.is_file() else (getattr(callback, "last_model_path", None) or None)


def _stop_signal(trainer: pl.Trainer, stop: SystemExit) -> int | None:
    """The signal behind Lightning's exit from ``fit``: SIGTERM (its ``SIGTERMException``, also
    after a Slurm requeue), SIGINT (Ctrl-C: it exits 1 while handling ``KeyboardInterrupt``);
    None for any other exit."""
    if isinstance(stop, SIGTERMException) or trainer.received_sigterm:
        return signal.SIGTERM
    if isinstance(stop.__context__, KeyboardInterrupt):
        return signal.SIGINT
    return None


def sigterm_outside_fit(signum: int, frame: Any) -> None:
    """SIGTERM while no Trainer handles it (the data scan, the model build, between phases, a
    Trainer's own setup): one line and exit 143, like a SIGTERM during training. While a Trainer
    fits, Lightning's handler calls this one too (it keeps the handlers it finds): then Lightning
    stops the run gracefully, saving ``last.ckpt``, and this one leaves it to it."""
    if signal.getsignal(signal.SIGTERM) is not sigterm_outside_fit:
        return
    raise RunInterrupted(
        "stopped by SIGTERM while no phase was training; finished phases and checkpoints are "
        "kept: run the same command again to go on",
        EXIT_CODES[signal.SIGTERM],
    )


@contextlib.contextmanager
def _ctrl_c_restored() -> Iterator[None]:
    """Give Ctrl-C back after ``fit``: Lightning ignores SIGINT once it handled one."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def train_phase(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train the single phase ``cfg.phase.name`` (see :func:`train`), holding its run dir."""
    validate_config(cfg)
    output_dir = Path(OmegaConf.select(cfg, "paths.output_dir")).expanduser()
    with hold_run_dir(output_dir):  # a no-op in the stages of phase=all (their top is held)
        return _train_phase(cfg, output_dir)


def _train_phase(cfg: DictConfig, output_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    cfg, finished = resume_run_dir(cfg, output_dir)  # the same run dir again
    if finished is not None:
        return finished, {
            "cfg": cfg,
            "model": None,
            "trainer": None,
            "loggers": [],
            "last_ckpt": cfg.ckpt_path,
            "finished_before": True,
        }
    log.info("run dir: %s", output_dir)
    note_overlays(cfg)
    init_from = cfg.get("init_from")
    source = read_init_from(init_from) if init_from is not None else None  # read once
    check_sources(cfg, source)
    datamodule = build_datamodule(cfg)
    datamodule.files()  # scan the images now: a data problem stops before any training output
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    model = build_phase(cfg)
    if cfg.get("ckpt_path") is not None:
        check_resume_checkpoint(cfg.ckpt_path, model, cfg.phase.name)
    if init_from is not None and cfg.get("ckpt_path") is None:
        copied = init_from_checkpoint(model, source)
        model.after_init_from(source.get("pirec_phase"))
        log.info("%s: weights from %s (%s)", cfg.phase.name, init_from, copied)
    elif cfg.phase.name != "imitation" and cfg.get("ckpt_path") is None:
        warnings.warn(
            f"{cfg.phase.name} is training from scratch: PI-REC starts it from the previous "
            "phase's weights (init_from=<checkpoint>, or phase=all)",
            stacklevel=2,
        )
    steps_per_batch = model.optimizer_steps_per_batch
    quiet_lightning_tips()
    callbacks = build_callbacks(cfg, steps_per_batch)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, steps_per_batch, callbacks, loggers)

    with warnings.catch_warnings(), generator_step_messages(steps_per_batch):
        # saving the post-step weights every N steps is what we want with manual optimization
        warnings.filterwarnings("ignore", "Using ModelCheckpoint with manual optimization")
        # refinement's frozen preliminary generator is in eval mode on purpose
        warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
        # raised inside Lightning itself, nothing a user can act on
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)")
        # a run dir resumed or rerun holds checkpoints already, on purpose
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty")
        try:
            with _ctrl_c_restored():
                trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except SystemExit as stop:
            # Ctrl-C and SIGTERM: Lightning shut down gracefully (a Slurm requeue included) and
            # exits; say so in one line with the signal's exit code; `last.ckpt` is kept
            signum = _stop_signal(trainer, stop)
            if signum is None:
                raise
            raise interruption(model, _last_checkpoint(trainer), cfg, signum) from None

    last = _last_checkpoint(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    finish_phase(trainer, model, last, cfg)  # diverged or interrupted: never handed on
    if global_rank() == 0:  # one writer, whatever the number of ranks
        mark_finished(output_dir, cfg.phase.name, metrics, trainer)
    log.info("run dir: %s (last checkpoint %s)", output_dir, last)
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "trainer": trainer,
        "callbacks": callbacks,
        "loggers": loggers,
        "last_ckpt": last,
    }
    return metrics, objects
