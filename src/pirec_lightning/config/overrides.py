"""The command line before Hydra sees it.

:func:`prepare_overrides` quotes path values Hydra's lexer rejects (``data.root=~/photos``,
accents) and turns Hydra's multi-line composition errors (an unknown key, an unknown group
option) into one :class:`~pirec_lightning.errors.ConfigError` that names the closest valid keys.
"""

from __future__ import annotations

import os
import re

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from pirec_lightning.config.checks import closest
from pirec_lightning.config.compose import compose_config
from pirec_lightning.errors import ConfigError, one_line

__all__ = ["prepare_overrides"]

#: Hydra flags after which an override cannot be checked on its own (they change what runs)
_HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp"}
_HYDRA_FLAGS_WITH_VALUE |= {"--config-name", "-cn", "--config-dir", "-cd", "--info", "-i"}
_HYDRA_FLAGS_WITH_VALUE |= {"--experimental-rerun"}


def _quote_if_needed(override: str) -> str:
    """``key=value`` with a leading ``~`` expanded and the value double-quoted when Hydra's
    lexer rejects it unquoted (``~``, accents, ...) and accepts it quoted; anything else
    unchanged."""
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


def _unknown_key_error(error: Exception, overrides: list[str]) -> ConfigError | None:
    """A ConfigError naming the closest keys for Hydra's "Could not override 'a.b'"."""
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
        f"unknown config key {key}: {closest(leaf, [str(k) for k in node], where)} "
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
