"""The Hydra config: composing it (:func:`compose_config`), the command line before Hydra sees it
(:func:`prepare_overrides`), and checking it before any work starts (:func:`validate_config`).

>>> cfg = compose_config(["phase=imitation", "debug=tiny"], output_dir="/tmp/run")  # doctest: +SKIP
"""

from pirec_lightning.config.checks import check_sources, validate_config
from pirec_lightning.config.compose import CONFIG_DIR, compose_config, config_dir, hydra_run
from pirec_lightning.config.overrides import prepare_overrides
from pirec_lightning.errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "check_sources",
    "compose_config",
    "config_dir",
    "hydra_run",
    "prepare_overrides",
    "validate_config",
]
