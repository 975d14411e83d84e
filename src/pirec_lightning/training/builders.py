"""Builders of a phase run from its config: DataModule, phase module, callbacks, loggers, Trainer.

Step counts in the config (``trainer.max_steps``, ``callbacks.model_checkpoint.every_n_train_steps``,
``trainer.val_check_interval``) are GENERATOR steps, i.e. batches. Lightning's ``global_step``
counts every optimizer step (discriminator and generator), so the counts are converted here.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.phases import PhaseModule
from pirec_lightning.training.callbacks import (
    FinalCheckpoint,
    FinalValidation,
    with_progress_bar,
)
from pirec_lightning.training.distributed import GANDDPStrategy, RankAgreement, resolve_precision
from pirec_lightning.training.ema import GeneratorEMA
from pirec_lightning.training.resume import AtomicCheckpointIO

__all__ = [
    "build_callbacks",
    "build_datamodule",
    "build_loggers",
    "build_phase",
    "build_trainer",
    "keep_last_checkpoints",
]

log = logging.getLogger(__name__)


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_datamodule(cfg: DictConfig) -> PIRECDataModule:
    """The DataModule of ``cfg.data``."""
    return instantiate(cfg.data, _convert_="all")


def build_phase(cfg: DictConfig, **overrides: Any) -> PhaseModule:
    """The phase LightningModule of ``cfg.phase`` with networks from ``cfg.model`` and loss
    weights from ``cfg.loss``; buildable without a Trainer."""
    options = _container(cfg.phase.module)
    phase_class = get_class(options.pop("_target_"))
    if cfg.get("max_bad_steps") is not None:
        options["max_bad_steps"] = int(cfg.max_bad_steps)
    # a phase may set its own loss weights or model options (phase.module.loss / .model, e.g.
    # the refinement's in phase=all) over the run's; plain dicts, so the module saves them as
    # hyperparameters and rebuilds from a checkpoint
    model, loss = (
        _container(OmegaConf.merge(cfg[key], options.pop(key, None) or {}))
        for key in ("model", "loss")
    )
    return phase_class(model=model, loss=loss, **options, **overrides)


def build_callbacks(cfg: DictConfig, steps_per_batch: int) -> list[pl.Callback]:
    """Every callback of a phase run, in one place: those of ``cfg.callbacks`` (null entries
    skipped; step intervals converted from generator steps to Lightning's optimizer-step count;
    ``keep_last`` of a checkpoint callback mapped onto Lightning's top-k, see
    :func:`keep_last_checkpoints`), the generator EMA when ``model.ema_decay`` is set, the
    generator-step progress bar when the config has none, :class:`FinalCheckpoint`,
    :class:`FinalValidation` and the :class:`RankAgreement` check."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        kwargs: dict[str, Any] = {}
        if node.get("every_n_train_steps"):
            kwargs["every_n_train_steps"] = int(node.every_n_train_steps) * steps_per_batch
        if "keep_last" in node:  # ours, not the callback's: resolved, then left out
            kwargs.update(keep_last_checkpoints(node.keep_last))
            node = _container(node)
            del node["keep_last"]
        log.debug("callback %s", name)
        callbacks.append(instantiate(node, **kwargs))
    ema_decay = OmegaConf.select(cfg, "model.ema_decay")
    if ema_decay is not None:
        callbacks.append(GeneratorEMA(float(ema_decay)))
    callbacks = with_progress_bar(callbacks, cfg)
    callbacks += [FinalCheckpoint(), FinalValidation()]
    # every rank must train the same phase into the same folder from the same checkpoints
    agreed = ("phase.name", "paths.output_dir", "ckpt_path", "init_from")
    callbacks.append(RankAgreement({key: OmegaConf.select(cfg, key) for key in agreed}))
    return callbacks


def keep_last_checkpoints(keep_last: int | None) -> dict[str, Any]:
    """``callbacks.model_checkpoint.keep_last`` as ModelCheckpoint arguments: the ``keep_last``
    periodic checkpoints of the highest steps (Lightning's top-k on the step it always logs);
    None keeps every one. ``last.ckpt`` (``save_last``) is kept either way."""
    if keep_last is None:
        return {"save_top_k": -1}
    return {"save_top_k": int(keep_last), "monitor": "step", "mode": "max"}


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
    if cfg.trainer.get("plugins") is None:  # atomic saves, weights-only loads
        kwargs["plugins"] = [AtomicCheckpointIO()]
    max_steps = cfg.trainer.get("max_steps")
    # -1 (or null): until stopped (Ctrl-C, a signal); keep_last bounds the checkpoints kept
    has_limit = max_steps is not None and max_steps > 0
    kwargs["max_steps"] = int(max_steps) * steps_per_batch if has_limit else -1
    devices = cfg.trainer.get("devices", 1)
    several = devices in (-1, "-1", "auto") or (isinstance(devices, int) and devices > 1)
    several = several or (not isinstance(devices, int | str) and len(devices) > 1)
    if several and cfg.trainer.get("strategy", "auto") == "auto":
        # one DDP per network: each GAN backward pass reaches (and all-reduces) one network only
        kwargs["strategy"] = GANDDPStrategy()
    kwargs["precision"] = resolve_precision(cfg.trainer.get("precision"), cfg.trainer.accelerator)
    return instantiate(cfg.trainer, **kwargs)
