"""Checking a composed config before any work starts: one line naming the key, the bad value
and the fix.

Each owner checks its own keys (:func:`pirec_lightning.data.settings.check_data_settings`,
:func:`pirec_lightning.models.settings.check_model_settings` and ``check_loss_settings``); this
module calls them once and checks what belongs to no module: the phase name, the Trainer keys,
paths, keys unknown to their ``_target_``, and what depends on the machine.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from pirec_lightning.config.compose import hydra_run
from pirec_lightning.data.settings import check_data_settings
from pirec_lightning.errors import CheckpointError, ConfigError, one_line
from pirec_lightning.models.losses import VGGWeightsUnavailable, resolve_vgg19_weights
from pirec_lightning.models.precision import PRECISIONS
from pirec_lightning.models.settings import check_loss_settings, check_model_settings
from pirec_lightning.phases import PHASES
from pirec_lightning.pretrained import PREFIX, model_file

__all__ = [
    "check_callback_settings",
    "check_known_keys",
    "check_runtime",
    "check_sources",
    "check_trainer_settings",
    "validate_config",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_path(value: Any, key: str, kind: str, fix: str) -> None:
    """A configured path that is set must exist as a ``kind`` ("folder" or "file")."""
    if value is None:
        return
    path = Path(str(value)).expanduser()
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise ConfigError(f"{key} {kind} does not exist: {value}; {fix}")


def _resolved(cfg: DictConfig) -> None:
    """Resolve every interpolation of ``cfg``.

    Raises:
        ConfigError: an interpolation does not resolve.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as error:  # noqa: BLE001 - report any resolution failure as one line
        raise ConfigError(f"config does not resolve: {one_line(error)}") from error


def _values(node: Any) -> Any:
    """A config node as plain containers for its owner's checks: interpolations resolved where
    they can be (one that cannot is left out here and reported by :func:`_resolved`), a
    missing value as ``"???"``."""
    if isinstance(node, DictConfig):
        values = {}
        for key in node:
            if OmegaConf.is_missing(node, key):
                values[str(key)] = "???"
                continue
            try:
                values[str(key)] = _values(node[key])
            except Exception:  # noqa: BLE001 - reported by _resolved, after the key checks
                continue
        return values
    if isinstance(node, ListConfig):
        return [_values(item) for item in node]
    return node


def check_trainer_settings(trainer: Mapping[str, Any]) -> None:
    """``trainer.*``: step counts, precision and nodes.

    Raises:
        ValueError: one line naming the key and the valid values.
    """
    max_steps = trainer.get("max_steps")
    if not (max_steps is None or (_is_int(max_steps) and (max_steps > 0 or max_steps == -1))):
        raise ValueError(
            "trainer.max_steps must be a positive integer or -1 (train until stopped, keeping "
            f"the last callbacks.model_checkpoint.keep_last checkpoints), got {max_steps!r}"
        )
    for key in ("val_check_interval", "log_every_n_steps"):
        value = trainer.get(key)
        fraction = key == "val_check_interval" and isinstance(value, float) and 0 < value <= 1
        if not (value is None or fraction or (_is_int(value) and value > 0)):
            raise ValueError(f"trainer.{key} must be a positive integer, got {value!r}")
    precision = str(trainer.get("precision", "32-true"))
    if precision not in PRECISIONS:
        raise ValueError(
            f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    nodes = trainer.get("num_nodes", 1)
    if not (_is_int(nodes) and nodes >= 1):
        raise ValueError(f"trainer.num_nodes must be a positive integer, got {nodes!r}")


def check_callback_settings(callbacks: Mapping[str, Any] | None) -> None:
    """``callbacks.*``: the keys pirec-lightning adds to a callback (``keep_last``).

    Raises:
        ValueError: one line naming the key and the valid values.
    """
    for name, node in (callbacks or {}).items():
        if not isinstance(node, Mapping) or "keep_last" not in node:
            continue
        keep = node["keep_last"]
        if not (keep is None or (_is_int(keep) and keep >= 0)):
            raise ValueError(
                f"callbacks.{name}.keep_last must be the number of periodic checkpoints to keep "
                f"(0 or more; null keeps every one), got {keep!r}"
            )


def validate_config(cfg: DictConfig) -> None:
    """Check what would otherwise fail late (after data loading, or mid-training).

    Raises:
        ConfigError: one line naming the key, the bad value and what to use instead.
    """
    phase = cfg.phase.get("name")
    if not (phase in PHASES or phase == "all"):
        raise ConfigError(f"unknown phase {phase!r}; valid phases: {', '.join([*PHASES, 'all'])}")
    try:
        check_data_settings(_values(cfg.data))
        check_model_settings(_values(cfg.model))
        check_loss_settings(_values(cfg.loss))
        check_trainer_settings(_values(cfg.trainer))
        check_callback_settings(_values(cfg.get("callbacks")))
    except ValueError as error:
        raise ConfigError(one_line(error)) from error
    _require_path(
        cfg.get("ckpt_path"), "ckpt_path", "file", "give a .ckpt file written by an earlier run"
    )
    init_from = cfg.get("init_from")
    if init_from is not None and str(init_from).startswith(PREFIX):
        try:
            model_file(str(init_from))
        except CheckpointError as error:
            raise ConfigError(f"init_from={init_from}: {one_line(error)}") from None
    else:
        _require_path(
            init_from, "init_from", "file", "give an earlier phase's checkpoints/last.ckpt"
        )
    check_known_keys(cfg)
    check_runtime(cfg)
    _resolved(cfg)  # every interpolation, so a typo in one fails here and not mid-run


def check_sources(cfg: DictConfig, init_from: Mapping[str, Any] | None) -> None:
    """What a single phase needs from outside before any work starts: refinement's generating
    checkpoint, and the VGG19 weights when ``loss.vgg=vgg19`` (or ``imagenet``).

    Args:
        cfg: a single phase's config.
        init_from: the ``init_from`` checkpoint as read (None without one).

    Raises:
        ConfigError: one line naming what is missing and the fix.
    """
    phase = cfg.phase.name
    if phase == "refinement" and init_from is None and cfg.get("ckpt_path") is None:
        raise ConfigError(
            "refinement starts from a generating checkpoint: "
            "set init_from=<generating run>/checkpoints/last.ckpt (or use phase=all)"
        )
    if phase == "refinement" and init_from is not None:
        source = init_from.get("pirec_phase")
        if source not in ("generating", "refinement"):
            raise ConfigError(
                f"refinement starts from a generating checkpoint, but {cfg.init_from} comes from "
                f"the {source or 'unknown'} phase; pass a generating run's last.ckpt"
            )
    wants = cfg.loss.get("perceptual", 0) > 0 or cfg.loss.get("style", 0) > 0
    if cfg.loss.get("vgg") in ("imagenet", "vgg19") and wants:
        try:
            resolve_vgg19_weights(cfg.loss.get("vgg_weights"))
        except VGGWeightsUnavailable as error:
            raise ConfigError(one_line(error)) from error


def closest(word: str, candidates: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(prefix + c for c in close) + "?"
    return "valid keys: " + ", ".join(prefix + c for c in sorted(candidates)[:20])


def _accepted_keys(target: str) -> set[str] | None:
    """Keyword arguments ``target`` accepts; None when it takes ``**kwargs`` or is not found."""
    try:
        obj = get_class(target)
    except Exception:  # noqa: BLE001 - a bad _target_ is reported by instantiate itself
        return None
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _check_node(node: Any, path: str, ignore: set[str] = frozenset()) -> None:
    if not isinstance(node, DictConfig):
        return
    target = node.get("_target_")
    if isinstance(target, str):
        accepted = _accepted_keys(target)
        if accepted is not None:
            own = {str(k) for k in node if not str(k).startswith("_")} - ignore
            for key in sorted(own - accepted):
                raise ConfigError(
                    f"unknown config key {path}.{key}: "
                    f"{closest(key, sorted(accepted - {'self'}), path + '.')} "
                    f"({target} does not take {key})"
                )
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _check_node(node[key], f"{path}.{key}", ignore)


def check_known_keys(cfg: DictConfig) -> None:
    """Every key under a ``_target_`` node must be an argument of that target.

    Raises:
        ConfigError: naming the unknown key and the closest valid ones.
    """
    # the Trainer's step counts are converted by pirec-lightning, which reads them itself
    _check_node(cfg.get("data"), "data")
    _check_node(cfg.get("model"), "model")
    _check_node(cfg.get("trainer"), "trainer")
    for group in ("callbacks", "logger"):
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            # keep_last is pirec-lightning's, mapped onto ModelCheckpoint by the training builders
            ignore = {"keep_last"} if group == "callbacks" else frozenset()
            for name in node:
                _check_node(node.get(name), f"{group}.{name}", ignore)


def check_runtime(cfg: DictConfig) -> None:
    """What would otherwise fail after data loading: ``max_bad_steps``, and an accelerator this
    machine does not have.

    Raises:
        ConfigError: e.g. ``trainer.accelerator=gpu`` (``trainer=gpu``) without a CUDA device.
    """
    bad = cfg.get("max_bad_steps")
    if bad is not None and (isinstance(bad, bool) or not isinstance(bad, int) or bad < 1):
        raise ConfigError(
            f"max_bad_steps must be a positive integer (consecutive NaN/inf steps before "
            f"training stops), got {bad!r}"
        )
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        chosen = _trainer_choice(cfg)
        fix = (
            "trainer=ddp_cpu (DDP on CPU processes) or trainer=cpu"
            if chosen == "ddp"
            else ("trainer=cpu")
        )
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer={chosen}) but this machine has no CUDA "
            f"GPU that PyTorch can use; train on the CPU with {fix}"
        )


def _trainer_choice(cfg: DictConfig) -> str:
    """The ``trainer=`` option that was chosen: Hydra's record on the command line; otherwise
    read from the config (a DDP strategy node is ``trainer=ddp``'s)."""
    hydra = hydra_run(cfg)
    if hydra is not None and hydra.runtime.choices.get("trainer"):
        return str(hydra.runtime.choices.get("trainer"))
    strategy = cfg.trainer.get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy)
    return "ddp" if "ddp" in str(target).lower() else "gpu"
