"""Training entry point: ``train(cfg)`` for code and notebooks, ``main()`` for the command line.

Step counts in the config (``trainer.max_steps``, ``callbacks.model_checkpoint.every_n_train_steps``,
``trainer.val_check_interval``) are GENERATOR steps, i.e. batches. Lightning's ``global_step``
counts every optimizer step (discriminator and generator), so the counts are converted here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pirec_lightning.config import ConfigError, config_dir, validate_config
from pirec_lightning.data import PIRECDataModule
from pirec_lightning.phases import PhaseModule

log = logging.getLogger(__name__)


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_datamodule(cfg: DictConfig) -> PIRECDataModule:
    """The DataModule of ``cfg.data``."""
    return instantiate(cfg.data, _convert_="all")


def build_phase(cfg: DictConfig, **overrides: Any) -> PhaseModule:
    """The phase LightningModule of ``cfg.phase`` with networks from ``cfg.model`` and loss
    weights from ``cfg.loss``; buildable without a Trainer."""
    return instantiate(
        cfg.phase.module,
        model=_container(cfg.model),
        loss=_container(cfg.loss),
        _convert_="all",
        **overrides,
    )


def build_callbacks(cfg: DictConfig, steps_per_batch: int) -> list[pl.Callback]:
    """Callbacks of ``cfg.callbacks`` (null entries skipped); step intervals are converted from
    generator steps to Lightning's optimizer-step count."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        kwargs: dict[str, Any] = {}
        if node.get("every_n_train_steps"):
            kwargs["every_n_train_steps"] = int(node.every_n_train_steps) * steps_per_batch
        log.debug("callback %s", name)
        callbacks.append(instantiate(node, **kwargs))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Loggers of ``cfg.logger`` (null entries skipped)."""
    return [
        instantiate(node)
        for node in (cfg.get("logger") or {}).values()
        if node is not None and "_target_" in node
    ]


def build_trainer(
    cfg: DictConfig, steps_per_batch: int, callbacks: list[pl.Callback], loggers: list[Any]
) -> pl.Trainer:
    """The Trainer of ``cfg.trainer`` with ``max_steps`` converted to optimizer steps."""
    kwargs: dict[str, Any] = {"callbacks": callbacks, "logger": loggers or False}
    max_steps = cfg.trainer.get("max_steps")
    if max_steps is not None and max_steps > 0:
        kwargs["max_steps"] = int(max_steps) * steps_per_batch
    return instantiate(cfg.trainer, **kwargs)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train the phase of ``cfg`` and return ``(metrics, objects)``.

    ``metrics`` holds the last value of every logged metric (floats); ``objects`` the ``cfg``,
    ``datamodule``, ``model``, ``trainer``, ``callbacks``, ``loggers`` and the ``last_ckpt`` path.

    Raises:
        ConfigError: before any work when the config is wrong.
    """
    validate_config(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)

    datamodule = build_datamodule(cfg)
    model = build_phase(cfg)
    steps_per_batch = model.optimizer_steps_per_batch
    callbacks = build_callbacks(cfg, steps_per_batch)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, steps_per_batch, callbacks, loggers)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    checkpoint = trainer.checkpoint_callback
    last = getattr(checkpoint, "last_model_path", None) or None
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


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """``python train.py [overrides]``: train and return ``val/psnr`` for Hydra sweepers."""
    try:
        metrics, _ = train(cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("val/psnr")


if __name__ == "__main__":
    main()
