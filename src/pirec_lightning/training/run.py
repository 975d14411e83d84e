"""Training entry point: ``train(cfg)`` for code and notebooks, ``main()`` for the command line."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from pirec_lightning.config import config_dir, prepare_overrides
from pirec_lightning.errors import ConfigError, PirecError, report
from pirec_lightning.training.loggers import finish_wandb
from pirec_lightning.training.phase import train_phase
from pirec_lightning.training.plan import train_all

__all__ = ["main", "monitored_metric", "train"]


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train ``cfg.phase`` and return ``(metrics, objects)``; usable without the command line.

    ``metrics`` holds the last value of every logged metric (floats; prefixed ``<phase>/`` for
    ``phase=all``). ``objects`` holds the ``cfg``, ``datamodule``, ``model``, ``trainer``,
    ``callbacks``, ``loggers`` and the ``last_ckpt`` path (for ``phase=all``: ``phases``, one
    such dict per phase trained in this call, and the final ``last_ckpt``).

    Raises:
        ConfigError: before any work when the config is wrong.
    """
    if cfg.phase.get("name") == "all":
        return train_all(cfg)
    return train_phase(cfg)


def monitored_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``cfg.optimized_metric`` (default ``val/psnr``) in ``metrics``; for
    ``phase=all``, the last phase's. None when ``optimized_metric`` is null.

    Raises:
        ConfigError: the metric was not logged (names the ones that were).
    """
    name = cfg.get("optimized_metric", "val/psnr")
    if name is None:
        return None
    if cfg.phase.get("name") == "all" and name not in metrics:
        name = f"{list(cfg.phase.stages)[-1]}/{name}"
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric {name!r} was not logged; logged: {', '.join(sorted(metrics))}"
        )
    return metrics[name]


def _run(cfg: DictConfig) -> float | None:
    try:
        metrics, objects = train(cfg)
        finish_wandb(objects.get("loggers", []))  # phase=all closed each phase's already
        return monitored_metric(cfg, metrics)
    except PirecError as error:
        sys.exit(report(error))


def main() -> float | None:
    """``python train.py [overrides]``: train and return the ``optimized_metric`` (default
    ``val/psnr``) for Hydra sweepers."""
    try:  # Hydra's own errors about the command line, as one line
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    except PirecError as error:
        sys.exit(report(error))
    # built here, not at import: importing this module must work without a conf/ folder
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(_run)
    return app()


if __name__ == "__main__":
    main()
