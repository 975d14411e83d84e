"""Checks of the command line and the composed config that turn late failures into one line.

:func:`prepare_overrides` runs before Hydra sees the command line: it quotes path values Hydra's
lexer rejects (``data.root=~/photos``, accents) and turns Hydra's multi-line composition errors
(an unknown key, an unknown group option) into one :class:`~pirec_lightning.errors.ConfigError`
that names the closest valid keys. :func:`check_known_keys` does the same for keys that were
added with ``+`` and would only fail inside a constructor. :func:`check_runtime` checks what
depends on the machine (a GPU) and the robustness settings.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from pirec_lightning.errors import ConfigError, one_line

__all__ = ["check_known_keys", "check_runtime", "prepare_overrides"]

#: Hydra flags after which an override cannot be checked on its own (they change what runs)
_HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp"}
_HYDRA_FLAGS_WITH_VALUE |= {"--config-name", "-cn", "--config-dir", "-cd", "--info", "-i"}
_HYDRA_FLAGS_WITH_VALUE |= {"--experimental-rerun"}


def _quote_if_needed(override: str) -> str:
    """``key=value`` with a leading ``~`` expanded and the value double-quoted when Hydra's
    lexer rejects it unquoted (``~``, accents, ...) and accepts it quoted; anything else
    unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        parser.parse_override(override)
        return override
    except Exception:  # noqa: BLE001 - Hydra raises several types for a bad token
        pass
    key, sep, value = override.partition("=")
    if not sep or not value or '"' in value or "'" in value:
        return override
    # as the shell would have done: Hydra itself never expands ~ (hydra.run.dir=~/x would
    # make a folder named "~")
    value = os.path.expanduser(value) if value.startswith("~") else value
    quoted = f'{key}="{value}"'
    try:
        parser.parse_override(quoted)
    except Exception:  # noqa: BLE001
        return override
    return quoted


def _closest(word: str, candidates: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(prefix + c for c in close) + "?"
    return "valid keys: " + ", ".join(prefix + c for c in sorted(candidates)[:20])


def _unknown_key_error(error: Exception, overrides: list[str]) -> ConfigError | None:
    """A ConfigError naming the closest keys for Hydra's "Could not override 'a.b'"."""
    from pirec_lightning.config import compose_config

    match = re.search(r"Could not override '([^']+)'", str(error))
    if match is None:
        return None
    key = match.group(1)
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        base = compose_config(rest)
    except Exception:  # noqa: BLE001 - fall back to Hydra's own message
        return None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return None
    where = f"{parent}." if parent else ""
    return ConfigError(
        f"unknown config key {key}: {_closest(leaf, [str(k) for k in node], where)} "
        f"(keys of {parent or 'the top level'}: "
        f"{', '.join(where + str(k) for k in node if not str(k).startswith('_'))}); "
        f"to add a new key on purpose use +{key}=..."
    )


def prepare_overrides(args: list[str]) -> list[str]:
    """Make a ``python train.py`` argument list safe for Hydra.

    Quotes path values Hydra's lexer rejects and, for a single run with overrides only,
    composes the config once to turn Hydra's errors into one line.

    Args:
        args: the command line after the program name.

    Returns:
        The arguments with such values quoted.

    Raises:
        ConfigError: an unknown key, an unknown group option, a value Hydra cannot parse.
    """
    from hydra.errors import HydraException

    from pirec_lightning.config import compose_config

    prepared, after_flag, flags = [], False, False
    for arg in args:
        if arg.startswith("-"):
            flags = True
            after_flag = arg in _HYDRA_FLAGS_WITH_VALUE
            prepared.append(arg)
            continue
        prepared.append(arg if after_flag else _quote_if_needed(arg))
        after_flag = False
    if flags:  # -m, --cfg, --help ...: Hydra's own business
        return prepared
    try:
        compose_config(prepared)
    except HydraException as error:
        mapped = _unknown_key_error(error, prepared)
        message = one_line(mapped or error)
        message = message.split(" Config search path:")[0]
        if "token recognition error" in message or "mismatched input" in message:
            message += (
                "; quote values with special characters for Hydra and the shell: "
                "'data.root=\"~/my photos\"'"
            )
        raise ConfigError(message) from error
    return prepared


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
                    f"{_closest(key, sorted(accepted - {'self'}), path + '.')} "
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
            for name in node:
                _check_node(node.get(name), f"{group}.{name}")


def check_runtime(cfg: DictConfig) -> None:
    """What would otherwise fail after data loading: the augmentation settings,
    ``max_bad_steps``, and an accelerator this machine does not have.

    Raises:
        ConfigError: e.g. ``trainer.accelerator=gpu`` (``trainer=gpu``) without a CUDA device.
    """
    import torch

    augment = cfg.data.get("augment")
    if augment is not None:  # probabilities in [0, 1], known augmentations
        from pirec_lightning.data.augment import build_augmentation

        try:
            build_augmentation(OmegaConf.to_container(augment, resolve=True))
        except (TypeError, ValueError) as error:
            raise ConfigError(one_line(error)) from error
    bad = cfg.get("max_bad_steps")
    if bad is not None and (isinstance(bad, bool) or not isinstance(bad, int) or bad < 1):
        raise ConfigError(
            f"max_bad_steps must be a positive integer (consecutive NaN/inf steps before "
            f"training stops), got {bad!r}"
        )
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu) but this machine has no CUDA GPU "
            "that PyTorch can use; train on the CPU with trainer=cpu"
        )
