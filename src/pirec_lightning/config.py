"""Composing and checking the Hydra config outside and inside the command line.

:func:`compose_config` gives notebooks and tests the same config `python train.py` sees;
:func:`validate_config` stops a bad config before any work starts, with one line that names the
problem and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pirec_lightning.config_checks import check_known_keys, check_runtime
from pirec_lightning.errors import ConfigError

#: the folder holding train.yaml when running from a source checkout
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

VGG_MODES = ("auto", "imagenet", "off")
VGG_INPUTS = ("raw", "imagenet")
GAN_TYPES = ("lsgan", "nsgan", "hinge")

__all__ = ["ConfigError", "compose_config", "config_dir", "validate_config"]


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
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
    return cfg


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _require_path(value: Any, key: str, kind: str, fix: str) -> None:
    """A configured path that is set must exist as a ``kind`` ("folder" or "file")."""
    if value is None:
        return
    path = Path(str(value)).expanduser()
    _require(
        path.is_dir() if kind == "folder" else path.is_file(),
        f"{key} {kind} does not exist: {value}; {fix}",
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_config(cfg: DictConfig) -> None:
    """Check what would otherwise fail late (after data loading, or mid-training).

    Raises:
        ConfigError: one line naming the key, the bad value and what to use instead.
    """
    from pirec_lightning.phases import PHASES

    phase = cfg.phase.get("name")
    _require(
        phase in PHASES or phase == "all",
        f"unknown phase {phase!r}; valid phases: {', '.join([*PHASES, 'all'])}",
    )

    data = cfg.data
    size = data.get("image_size")
    _require(
        _is_int(size) and size >= 32 and size % 4 == 0,
        f"data.image_size must be an integer >= 32 divisible by 4 (the networks downsample "
        f"twice and the discriminator needs room), got {size!r}",
    )
    for key in ("batch_size", "num_workers"):
        value = data.get(key)
        _require(
            _is_int(value) and value >= (1 if key == "batch_size" else 0),
            f"data.{key} must be a {'positive' if key == 'batch_size' else 'non-negative'} "
            f"integer, got {value!r}",
        )
    pixels = data.get("max_pixels")
    _require(
        pixels is None or (_is_int(pixels) and pixels > 0),
        f"data.max_pixels must be a positive integer or null (no limit), got {pixels!r}",
    )
    limit = data.get("limit")
    _require(
        limit is None or (_is_int(limit) and limit > 0),
        f"data.limit must be a positive integer or null, got {limit!r}",
    )
    _require(
        not OmegaConf.is_missing(data, "root"),
        "data.root is required with data=folder: add data.root=/path/to/images",
    )
    _require_path(
        data.get("root"),
        "data.root",
        "folder",
        "point it at a folder of images or remove it to train on the embedded emoji",
    )
    split = data.get("split")
    _require(
        split is not None
        and len(split) == 3
        and all(_is_number(f) and f >= 0 for f in split)
        and abs(sum(split) - 1) < 1e-6,
        f"data.split must be three non-negative fractions summing to 1, got {split}",
    )

    try:
        from pirec_lightning.data.extra_val import check_extra_val

        extra_val = data.get("extra_val")
        if extra_val is not None:
            check_extra_val(OmegaConf.to_container(extra_val, resolve=True))
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from error

    confusion = dict(data.get("confusion") or {})
    confusion.pop("enabled", None)
    confusion.pop("seed", None)
    try:
        from pirec_lightning.preprocess.confusion import ConfusionConfig

        ConfusionConfig.from_any(confusion)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data.confusion: {error}".splitlines()[0]) from error

    try:  # data.cache, .preprocess_backend, .augment, model.compile_mode: their modules check
        from pirec_lightning.data.augment import build_augmentation
        from pirec_lightning.data.cache import check_cache_mode
        from pirec_lightning.models.networks.compile import check_compile_mode
        from pirec_lightning.preprocess.confusion import check_backend

        check_cache_mode(data.get("cache", "none"))
        check_backend(data.get("preprocess_backend", "engine"))
        check_compile_mode(cfg.model.get("compile_mode"))
        augment = data.get("augment")
        build_augmentation(OmegaConf.to_container(augment) if augment is not None else None)
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from error

    loss = cfg.loss
    vgg = "off" if loss.get("vgg") is False else loss.get("vgg")
    _require(vgg in VGG_MODES, f"loss.vgg must be one of {', '.join(VGG_MODES)}, got {vgg!r}")
    vgg_input = loss.get("vgg_input", "raw")
    _require(
        vgg_input in VGG_INPUTS,
        f"loss.vgg_input must be one of {', '.join(VGG_INPUTS)}, got {vgg_input!r}",
    )
    _require(
        loss.get("gan_type") in GAN_TYPES,
        f"loss.gan_type must be one of {', '.join(GAN_TYPES)}, got {loss.get('gan_type')!r}",
    )
    for key in ("l1", "adversarial", "perceptual", "style"):
        value = loss.get(key)
        _require(
            _is_number(value) and value >= 0,
            f"loss.{key} must be a non-negative number, got {value!r}",
        )
    _require_path(
        loss.get("vgg_weights"),
        "loss.vgg_weights",
        "file",
        "give the path of vgg19-dcbb9e9d.pth or set loss.vgg=off",
    )

    lr = cfg.model.optimizer.get("lr")
    _require(_is_number(lr) and lr > 0, f"model.optimizer.lr must be a positive number, got {lr!r}")
    for net in ("generator", "discriminator"):
        base = cfg.model[net].get("base_channels")
        _require(
            _is_int(base) and base > 0,
            f"model.{net}.base_channels must be a positive integer, got {base!r}",
        )
    ema = cfg.model.get("ema_decay")
    _require(
        ema is None or (_is_number(ema) and 0 < ema < 1),
        f"model.ema_decay must be a number in (0, 1) or null (off), got {ema!r}",
    )
    blocks = cfg.model.generator.get("res_blocks")
    _require(
        _is_int(blocks) and blocks >= 0,
        f"model.generator.res_blocks must be a non-negative integer, got {blocks!r}",
    )

    trainer = cfg.trainer
    for key in ("max_steps", "val_check_interval", "log_every_n_steps"):
        value = trainer.get(key)
        fraction = key == "val_check_interval" and isinstance(value, float) and 0 < value <= 1
        _require(
            value is None or fraction or (_is_int(value) and (value > 0 or key == "max_steps")),
            f"trainer.{key} must be a positive integer, got {value!r}",
        )
    try:
        from pirec_lightning.distributed import check_trainer_config

        check_trainer_config(trainer)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    _require_path(
        cfg.get("ckpt_path"), "ckpt_path", "file", "give a .ckpt file written by an earlier run"
    )
    _require_path(
        cfg.get("init_from"), "init_from", "file", "give an earlier phase's checkpoints/last.ckpt"
    )
    check_known_keys(cfg)
    check_runtime(cfg)
    # resolve every interpolation now, so a typo in one fails here and not mid-run
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as error:  # noqa: BLE001 - report any resolution failure as one line
        raise ConfigError(f"config does not resolve: {error}".splitlines()[0]) from error
