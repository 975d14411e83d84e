"""Deterministic train/val/test splits by stable hashing of group keys.

A file's split depends only on its group key, the seed and the fractions: not on the order files
are listed, the folder they live in, the machine or the Python hash seed. Whole groups go to one
split, so e.g. the skin-tone variants of an emoji never leak between train and test.

>>> emoji_group_key("1f469-1f3fb-200d-1f9b3.png")
'1f469-200d-1f9b3'
>>> emoji_group_key("263a-fe0f.png") == emoji_group_key("263a.png")
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["SPLITS", "emoji_group_key", "split_files"]

SPLITS: tuple[str, str, str] = ("train", "val", "test")
"""Split names, in the order of ``fractions``."""

_SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
_VARIATION_SELECTOR = "fe0f"


def emoji_group_key(path_or_name: str | Path) -> str:
    """Group key of an emoji file: its codepoints without skin-tone modifiers or ``fe0f``.

    Args:
        path_or_name: a twemoji asset path or name such as ``1f44d-1f3fd.png`` (hex codepoints
            joined by ``-``; the extension is optional).

    Returns:
        The lower-case key, e.g. ``"1f44d"`` for every skin tone of thumbs-up. The five bare
        skin-tone swatches (``1f3fb.png`` ...) keep their own name as key.
    """
    name = Path(path_or_name).name.lower()
    stem = name.rsplit(".", 1)[0] if name.endswith((".png", ".svg")) else name
    parts = [p for p in stem.split("-") if p not in _SKIN_TONES and p != _VARIATION_SELECTOR]
    return "-".join(parts) or stem


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(fractions)
    ok = len(values) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in values
    )
    if not ok or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(
            "fractions must be 3 non-negative numbers (train, val, test) summing to 1, "
            f"got {fractions!r}"
        )
    return values  # type: ignore[return-value]


def _unit_hash(seed: int, key: str) -> float:
    """Map ``(seed, key)`` to [0, 1) with SHA-1, identically on every machine and run."""
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _assign(u: float, fractions: tuple[float, float, float]) -> str:
    cumulative, chosen = 0.0, SPLITS[0]
    for name, fraction in zip(SPLITS, fractions):
        if fraction <= 0:
            continue  # an empty split never receives anything, even at rounding edges
        cumulative += fraction
        chosen = name
        if u < cumulative:
            break
    return chosen


def split_files(
    files: Iterable[str | Path],
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    seed: int = 0,
    group_key: Callable[[Path], str] | None = None,
) -> dict[str, list[Path]]:
    """Split files into train/val/test, assigning whole groups by a stable hash.

    Each group's key is hashed with the seed to a number ``u`` in [0, 1); the group goes to the
    first split whose cumulative fraction exceeds ``u``. Proportions are therefore right in
    expectation over groups, not exactly.

    Args:
        files: image paths; duplicates are counted once.
        fractions: ``(train, val, test)``, non-negative, summing to 1.
        seed: changes the assignment; the same seed always gives the same split.
        group_key: maps a path to its group key (e.g. `emoji_group_key`). ``None`` makes each
            file its own group keyed by its file name, so same-named files in different
            subfolders land in the same split.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each list sorted, disjoint, together
        covering ``files``.

    Raises:
        ValueError: ``fractions`` is not 3 non-negative numbers summing to 1.
    """
    checked = _check_fractions(fractions)
    key_of = group_key if group_key is not None else (lambda path: path.name)
    result: dict[str, list[Path]] = {name: [] for name in SPLITS}
    for path in sorted({Path(f) for f in files}):
        result[_assign(_unit_hash(seed, key_of(path)), checked)].append(path)
    return result
