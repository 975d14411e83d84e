"""Training entry point: ``train(cfg)`` for code and notebooks, ``main()`` for the command line."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import hydra
from hydra.types import RunMode
from omegaconf import DictConfig

from pirec_lightning.config import config_dir, hydra_run, prepare_overrides
from pirec_lightning.errors import ConfigError, PirecError, report
from pirec_lightning.training.loggers import finish_wandb
from pirec_lightning.training.phase import sigterm_outside_fit, train_phase
from pirec_lightning.training.plan import train_all
from pirec_lightning.training.rundir import LOCK_FILE, hold_run_dir, read_lock

__all__ = ["main", "monitored_metric", "train"]

log = logging.getLogger("pirec_lightning.train")


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train ``cfg.phase`` and return ``(metrics, objects)``; usable without the command line.

    ``metrics`` holds the last value of every logged metric (floats; prefixed ``<phase>/`` for
    ``phase=all``). ``objects`` holds the ``cfg``, ``datamodule``, ``model``, ``trainer``,
    ``callbacks``, ``loggers`` and the ``last_ckpt`` path (for ``phase=all``: ``phases``, one
    such dict per phase trained in this call, and the final ``last_ckpt``).

    The run holds its run dir (``run.lock``) while it trains.

    Raises:
        ConfigError: before any work when the config is wrong.
        RunDirBusy: another live run holds the run dir.
        RunInterrupted: Ctrl-C or SIGTERM stopped training (``exit_code`` 130 or 143).
    """
    if cfg.phase.get("name") == "all":
        return train_all(cfg)
    return train_phase(cfg)


def monitored_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``cfg.optimized_metric`` (default ``val/psnr``) in ``metrics``; for
    ``phase=all``, the last phase's. None when ``optimized_metric`` is null, or when it was not
    logged in a single run (validation off: said in the log; only a sweep needs the value).

    Raises:
        ConfigError: the metric was not logged in a sweep (names the ones that were).
    """
    name = cfg.get("optimized_metric", "val/psnr")
    if name is None:
        return None
    if cfg.phase.get("name") == "all" and name not in metrics:
        name = f"{list(cfg.phase.stages)[-1]}/{name}"
    if name not in metrics:
        message = f"optimized_metric {name!r} was not logged; logged: {', '.join(sorted(metrics))}"
        hydra_config = hydra_run(cfg)
        if hydra_config is not None and hydra_config.mode == RunMode.MULTIRUN:
            raise ConfigError(message)
        log.warning("%s (validation off? a sweep needs it)", message)
        return None
    return metrics[name]


def _remove_if_unused(run_dir: Path) -> None:
    """Remove the run dir Hydra made for a run that stopped before any work: it holds nothing
    but Hydra's records (``.hydra/``, the log) and this run's own lock."""
    if not run_dir.is_dir():
        return
    lock = read_lock(run_dir)
    own_lock = lock is not None and lock.get("pid") == os.getpid()
    for entry in run_dir.iterdir():
        ours = entry.name == ".hydra" or entry.suffix == ".log"
        if not (ours or (entry.name == LOCK_FILE and own_lock)):
            return
    shutil.rmtree(run_dir, ignore_errors=True)


def _run(cfg: DictConfig) -> float | None:
    # SIGTERM where no Trainer handles it (data scan, model build, between phases): one line;
    # set here, in the job, so that Hydra's launchers never see the exception
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, sigterm_outside_fit) if main_thread else None
    try:
        metrics, objects = train(cfg)
        finish_wandb(objects.get("loggers", []))  # phase=all closed each phase's already
        return monitored_metric(cfg, metrics)
    except PirecError as error:
        # a config mistake leaves no empty run dir behind (and the one line stays the only one)
        with contextlib.suppress(Exception):
            hydra_config = hydra_run(cfg)
            if hydra_config is not None:
                _remove_if_unused(Path(hydra_config.runtime.output_dir))
        sys.exit(report(error))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _explicit_run_dir(args: list[str]) -> str | None:
    """``hydra.run.dir=D`` of a single run's command line (the last one given), else None."""
    if any(arg.startswith("-") for arg in args):  # -m, --cfg, ...: Hydra's own business
        return None
    given = [arg.partition("=")[2] for arg in args if arg.startswith("hydra.run.dir=")]
    if not given or "${" in given[-1]:  # an interpolation: Hydra resolves it, then train() holds
        return None
    return given[-1].strip("\"'")


def main() -> float | None:
    """``python train.py [overrides]``: train and return the ``optimized_metric`` (default
    ``val/psnr``) for Hydra sweepers."""
    try:  # Hydra's own errors about the command line, as one line
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
        # built here, not at import: importing this module must work without a conf/ folder
        app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(
            _run
        )
        run_dir = _explicit_run_dir(sys.argv[1:])
        if run_dir is None:
            return app()
        # a named run dir is held before Hydra writes its records into it
        with hold_run_dir(run_dir):
            return app()
    except PirecError as error:
        sys.exit(report(error))


if __name__ == "__main__":
    main()
