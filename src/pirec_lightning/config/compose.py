"""Composing the Hydra config outside the command line: notebooks and tests see the same config
``python train.py`` sees."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from pirec_lightning.errors import ConfigError

__all__ = ["CONFIG_DIR", "compose_config", "config_dir", "hydra_run"]

#: the folder holding train.yaml when running from a source checkout
CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"


def config_dir() -> Path:
    """The project's ``conf/`` folder (from a source checkout or the working directory)."""
    for candidate in (CONFIG_DIR, Path.cwd() / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(
        f"cannot find conf/train.yaml (looked in {CONFIG_DIR} and {Path.cwd() / 'conf'}); "
        "run from the project root"
    )


def compose_config(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose ``conf/train.yaml`` with command-line style overrides, outside a Hydra app.

    ``output_dir`` becomes the run dir (``paths.output_dir``); everything is written under it.

    >>> cfg = compose_config(["phase=imitation", "debug=tiny"], output_dir="/tmp/run")
    >>> cfg.phase.name
    'imitation'
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
    return cfg


def hydra_run(cfg: DictConfig) -> Any | None:
    """Hydra's record of the command-line run that composed ``cfg`` (``runtime.choices``,
    ``overrides.task``, ``runtime.output_dir``), or None outside one: a config composed in code,
    or a Hydra run of the same process that wrote elsewhere (its record is still set)."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    theirs = OmegaConf.select(hydra, "runtime.output_dir", default=None)  # unset: --cfg job
    ours = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if theirs is None or ours is None:
        return None
    ours, theirs = Path(str(ours)).expanduser().resolve(), Path(theirs).expanduser().resolve()
    return hydra if theirs == ours or theirs in ours.parents else None
