"""Named extra validation sets (``data.extra_val``), each validated and logged on its own.

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

__all__ = ["check_extra_val"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
KEYS = ("root", "image_size", "limit")


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
        if size is not None and not (isinstance(size, int) and size >= 16 and size % 4 == 0):
            raise ValueError(
                f"{where}.image_size must be an integer >= 16 divisible by 4, got {size!r}"
            )
        if limit is not None and not (isinstance(limit, int) and limit > 0):
            raise ValueError(f"{where}.limit must be a positive integer or null, got {limit!r}")
        sets[str(name)] = {"root": root, "image_size": size, "limit": limit}
    return sets
