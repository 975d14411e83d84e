"""The checks of the ``data.*`` keys, owned here and called once by
:func:`pirec_lightning.config.validate_config` before any work starts.

Named extra validation sets (``data.extra_val``) are validated and logged each on its own.

A set is a mapping with ``root`` (a folder of images, an ``.npz`` holding ``images`` uint8
(N, H, W, 3), or null for the main data's validation split), ``image_size`` (null: the main
size) and ``limit`` (at most this many images, the first ones in sorted order; null: all)::

    data:
      extra_val:
        noto: {root: ~/data/noto_emoji_128.npz, limit: 256}
        emoji128: {root: null, image_size: 128}

Metrics of set ``noto`` are logged as ``val_noto/psnr``, ``val_noto/ssim``, ... with a sample
grid ``<phase>/samples_noto``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pirec_lightning.data.augment import build_augmentation
from pirec_lightning.data.avatars import check_avatar_settings
from pirec_lightning.data.cache import check_cache_mode
from pirec_lightning.data.icons import check_icon_settings
from pirec_lightning.data.mix import check_mix_settings
from pirec_lightning.data.placement import check_placement
from pirec_lightning.preprocess.confusion import ConfusionConfig, check_backend

__all__ = ["MIN_IMAGE_SIZE", "check_data_settings", "check_extra_val", "check_image_size"]

#: the networks downsample twice and the discriminator needs room
MIN_IMAGE_SIZE = 32

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
KEYS = ("root", "image_size", "limit")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_image_size(size: Any, key: str = "data.image_size") -> int:
    """``size`` if it is an integer >= :data:`MIN_IMAGE_SIZE` divisible by 4.

    Raises:
        ValueError: one line naming ``key``.
    """
    if not (_is_int(size) and size >= MIN_IMAGE_SIZE and size % 4 == 0):
        raise ValueError(
            f"{key} must be an integer >= {MIN_IMAGE_SIZE} divisible by 4 (the networks "
            f"downsample twice and the discriminator needs room), got {size!r}"
        )
    return size


def check_data_settings(data: Mapping[str, Any]) -> None:
    """Every ``data.*`` key of a resolved config (plain containers).

    Raises:
        ValueError: one line naming the key, the bad value and what to use instead.
    """
    check_image_size(data.get("image_size"))
    for key in ("batch_size", "num_workers"):
        value, least = data.get(key), 1 if key == "batch_size" else 0
        if not (_is_int(value) and value >= least):
            kind = "positive" if least else "non-negative"
            raise ValueError(f"data.{key} must be a {kind} integer, got {value!r}")
    for key, what in (("max_pixels", "(no limit)"), ("limit", "")):
        value = data.get(key)
        if not (value is None or (_is_int(value) and value > 0)):
            raise ValueError(f"data.{key} must be a positive integer or null {what}, got {value!r}")
    root = data.get("root", None)
    if root == "???":
        raise ValueError("data.root is required with data=folder: add data.root=/path/to/images")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise ValueError(
            f"data.root folder does not exist: {root}; point it at a folder of images or "
            "remove it to train on the embedded emoji"
        )
    split = data.get("split")
    if not (
        split is not None
        and len(split) == 3
        and all(_is_number(f) and f >= 0 for f in split)
        and abs(sum(split) - 1) < 1e-6
    ):
        raise ValueError(
            f"data.split must be three non-negative fractions summing to 1, got {split}"
        )
    check_extra_val(data.get("extra_val"))
    if data.get("avatars") is not None:
        check_avatar_settings(data["avatars"])
    if data.get("icons") is not None:
        check_icon_settings(data["icons"])
    if data.get("mix") is not None:
        check_mix_settings(data["mix"])
    confusion = dict(data.get("confusion") or {})
    confusion.pop("enabled", None)
    confusion.pop("seed", None)
    try:
        ConfusionConfig.from_any(confusion)
    except (TypeError, ValueError) as error:
        raise ValueError(f"data.confusion: {error}") from error
    check_cache_mode(data.get("cache", "none"))
    check_placement(data.get("preprocess_on", "device"), data.get("cache", "none"))
    check_backend(data.get("preprocess_backend", "engine"))
    try:
        build_augmentation(data.get("augment"))
    except TypeError as error:
        raise ValueError(str(error)) from error


def check_extra_val(extra_val: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Normalize ``data.extra_val`` to ``{name: {root, image_size, limit}}``.

    Raises:
        ValueError: one line naming the set and the problem.
    """
    sets: dict[str, dict[str, Any]] = {}
    for name, spec in (extra_val or {}).items():
        where = f"data.extra_val.{name}"
        if not NAME.match(str(name)):
            raise ValueError(
                f"{where}: names are letters, digits, '_' and '-' (logged as val_<name>)"
            )
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a mapping with root, image_size, limit")
        unknown = set(spec) - set(KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; valid: {', '.join(KEYS)}")
        root, size, limit = (spec.get(k) for k in KEYS)
        if root is not None and not Path(str(root)).expanduser().exists():
            raise ValueError(f"{where}.root does not exist: {root}; give a folder or an .npz")
        if size is not None:
            check_image_size(size, f"{where}.image_size")
        if limit is not None and not (isinstance(limit, int) and limit > 0):
            raise ValueError(f"{where}.limit must be a positive integer or null, got {limit!r}")
        sets[str(name)] = {"root": root, "image_size": size, "limit": limit}
    return sets
