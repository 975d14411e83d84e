"""``data=avatars``: DiceBear avatars rendered from SVG, each with its exact line art.

Nothing is downloaded: the avatars are drawn by ``dicebear-core`` (the Python port of DiceBear)
from the style definitions shipped in ``dicebear-styles``, and rasterized with ``resvg``. An item
is fixed by ``(style, seed)``: the DiceBear seed is ``str(seed)``, so the same pair gives the same
pixels on every machine. The line art (:mod:`.lineart`) is separated from the same SVG
as the picture, so the pair is exact.

**Styles.** Only styles whose ``meta.license`` is CC0 1.0 or CC BY 4.0 are accepted
(:func:`avatar_styles` reads name, creator and licence from the style files, for attribution).
:data:`LINE_ART_STYLES` draw ink outlines that the separation recovers (chosen by measurement,
see :func:`.lineart.line_art_figures`); :data:`PICTURE_STYLES` have no ink outlines
(flat colour, shading only) and come without line art (``has_line_art`` False, ``line_art``
zeros): training falls back to Canny edges for them.

**Split rule.** ``count`` items are shared among the styles: each training style has weight 1,
each held-out style weight ``val + test`` (it only feeds those two splits); style ``k`` gets
``n_k`` items (largest remainder of ``count * w_k / sum(w)``), seeds ``0 .. n_k - 1``. A pair
``(style, seed)`` is hashed (SHA-1 of ``"<split_seed>:<style>:<seed>"`` to ``u`` in [0, 1)):

- a training style's pair goes to ``train``, ``val`` or ``test`` by ``u`` against the
  ``(train, val, test)`` fractions, so its val/test seeds never appear in training;
- a held-out style's pair goes to ``val`` or ``test`` by ``u`` against ``(val, test)``
  rescaled to 1, so the style never appears in training.

A held-out style takes its ``-neutral`` variant with it (``lorelei`` holds out
``lorelei-neutral``: the same drawings). By default :data:`HELDOUT_STYLES` are held out:
``lorelei`` (+ ``lorelei-neutral``), a line-art style, and ``personas``, a picture style.
Items are ordered by seed, then by style.

**Cache.** Rendering happens in ``__getitem__`` (in the DataLoader's workers), once: the picture
(RGBA PNG, as resvg draws it) and the line art (1-bit PNG) go to
``<cache>/dicebear/<versions>/<size>px/<style>/<seed>.png`` and ``<seed>.line.png``, each written
to a temporary file and renamed, line art first, so a picture on disk means a complete pair.
``<cache>`` is ``cache_dir`` (``data.avatars.cache_dir``), else ``$PIREC_CACHE_DIR``, else
``~/.cache/pirec_lightning``.

>>> ds = AvatarDataset("train", image_size=128)  # doctest: +SKIP
>>> item = ds[0]  # doctest: +SKIP
>>> item["image"].shape, item["line_art"].shape, item["has_line_art"]  # doctest: +SKIP
(torch.Size([3, 128, 128]), torch.Size([1, 128, 128]), tensor(True))
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.resources
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pirec_lightning.data.emoji_svg import cache_dir as default_cache_dir
from pirec_lightning.data.split import SPLITS
from pirec_lightning.data.svg_pairs import load_pair, render_pair, write_atomic
from pirec_lightning.errors import DataError

__all__ = [
    "ALLOWED_LICENSES",
    "AVATAR_SPLITS",
    "HELDOUT_STYLES",
    "LINE_ART_STYLES",
    "PICTURE_STYLES",
    "AvatarDataset",
    "AvatarStyle",
    "attribution_markdown",
    "avatar_items",
    "avatar_styles",
    "avatar_svg",
    "check_avatar_settings",
    "render_avatar",
]

ALLOWED_LICENSES = ("CC0 1.0", "CC BY 4.0")
#: ink outlines recovered exactly (line art: every item)
LINE_ART_STYLES = (
    "adventurer",
    "adventurer-neutral",
    "croodles",
    "croodles-neutral",
    "lorelei",
    "lorelei-neutral",
    "micah",
    "notionists",
    "notionists-neutral",
    "open-peeps",
)
#: flat colour without ink outlines: pictures only
PICTURE_STYLES = ("big-ears", "big-smile", "dylan", "fun-emoji", "miniavs", "personas", "toon-head")
HELDOUT_STYLES = ("lorelei", "personas")
AVATAR_SPLITS: tuple[str, ...] = (*SPLITS, "all")
#: bump when the rendering or the line art changes: a new cache folder
RENDER_VERSION = 1
_INSTALL = "pip install dicebear-core dicebear-styles"


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise DataError(
            f"data=avatars needs the DiceBear packages (could not import {module}): {_INSTALL}"
        ) from error


@dataclass(frozen=True)
class AvatarStyle:
    """A DiceBear style and its attribution, as its definition file states it."""

    name: str
    title: str
    creator: str
    creator_url: str
    license: str
    license_url: str
    source_url: str
    has_line_art: bool


def _style_file(name: str) -> Any:
    folder = importlib.resources.files(_require("dicebear_styles"))
    path = folder.joinpath(f"{name}.json")
    if not path.is_file():
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
        raise DataError(f"unknown DiceBear style {name!r}; dicebear-styles has {', '.join(known)}")
    return path


@cache
def _definition(name: str) -> dict[str, Any]:
    return json.loads(_style_file(name).read_text("utf-8"))


def avatar_styles(names: Sequence[str] | None = None) -> list[AvatarStyle]:
    """Name, creator and licence of each style (default: line-art then picture styles).

    Raises:
        DataError: an unknown style, one whose licence is not in :data:`ALLOWED_LICENSES`, or
            dicebear-styles is missing.
    """
    chosen = []
    for name in names if names is not None else (*LINE_ART_STYLES, *PICTURE_STYLES):
        meta = _definition(name).get("meta", {})
        license_ = meta.get("license", {})
        if license_.get("name") not in ALLOWED_LICENSES:
            raise DataError(
                f"DiceBear style {name!r} is licensed {license_.get('name')!r}, not "
                f"{' or '.join(ALLOWED_LICENSES)}: leave it out of data.avatars.styles"
            )
        creator, source = meta.get("creator", {}), meta.get("source", {})
        chosen.append(
            AvatarStyle(
                name=name,
                title=source.get("name", name),
                creator=creator.get("name", ""),
                creator_url=creator.get("url", ""),
                license=license_["name"],
                license_url=license_.get("url", ""),
                source_url=source.get("url", ""),
                has_line_art=name in LINE_ART_STYLES,
            )
        )
    return chosen


def attribution_markdown(names: Sequence[str] | None = None) -> str:
    """A markdown table crediting each style (for the README)."""
    rows = ["| style | after | by | licence |", "|---|---|---|---|"]
    for s in avatar_styles(names):
        rows.append(
            f"| `{s.name}` | [{s.title}]({s.source_url}) | [{s.creator}]({s.creator_url}) "
            f"| [{s.license}]({s.license_url}) |"
        )
    return "\n".join(rows)


@cache
def _style(name: str) -> Any:
    # validating a definition takes about a second: once per style and process
    return _require("dicebear").Style(_definition(name))


def avatar_svg(style: str, seed: int) -> str:
    """The SVG DiceBear draws for ``(style, seed)`` (seed string ``str(seed)``)."""
    return _require("dicebear").Avatar(_style(style), {"seed": str(seed)}).to_string()


def _family(style: str) -> str:
    return style.removesuffix("-neutral")


def _check_heldout(heldout: Sequence[str], names: Sequence[str]) -> None:
    unknown = set(heldout) - {_family(n) for n in names} - set(names)
    if unknown:
        raise DataError(
            f"data.avatars.heldout_styles {sorted(unknown)} are not among the styles {list(names)}"
        )


def _unit_hash(key: str) -> float:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def _pick(u: float, names: Sequence[str], fractions: Sequence[float]) -> str:
    total = 0.0
    for name, fraction in zip(names, fractions):
        total += fraction
        if fraction > 0 and u < total:
            return name
    return [n for n, f in zip(names, fractions) if f > 0][-1]


def avatar_items(
    split: str = "train",
    styles: Sequence[str] | None = None,
    heldout_styles: Sequence[str] = HELDOUT_STYLES,
    count: int = 20_000,
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    split_seed: int = 0,
) -> list[tuple[str, int]]:
    """The ``(style, seed)`` pairs of one split (the rule is in the module docstring).

    Raises:
        DataError: bad ``split``, ``fractions``, ``count``, or every style held out.
    """
    styles = list(styles) if styles is not None else [*LINE_ART_STYLES, *PICTURE_STYLES]
    if split not in AVATAR_SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(AVATAR_SPLITS)}")
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"data.split must be 3 fractions summing to 1, got {fractions}")
    if not (isinstance(count, int) and count > 0):
        raise DataError(f"data.avatars.count must be a positive integer, got {count!r}")
    held = {_family(s) for s in heldout_styles}
    heldout = [_family(s) in held for s in styles]
    if all(heldout):
        raise DataError("data.avatars.heldout_styles holds out every style: nothing to train on")
    rest = fractions[1] + fractions[2]
    weights = [rest if h else 1.0 for h in heldout]
    exact = [count * w / sum(weights) for w in weights]
    quota = [int(e) for e in exact]
    by_remainder = sorted(range(len(styles)), key=lambda k: (quota[k] - exact[k], k))
    for k in by_remainder[: count - sum(quota)]:
        quota[k] += 1
    items = []
    for seed in range(max(quota)):
        for style, n, is_held in zip(styles, quota, heldout):
            if seed >= n:
                continue
            u = _unit_hash(f"{split_seed}:{style}:{seed}")
            if is_held:
                where = _pick(u, SPLITS[1:], [f / rest for f in fractions[1:]])
            else:
                where = _pick(u, SPLITS, fractions)
            if split in ("all", where):
                items.append((style, seed))
    return items


@cache
def _versions() -> str:
    packages = ("dicebear-core", "dicebear-styles")
    return "-".join([f"r{RENDER_VERSION}", *(importlib.metadata.version(p) for p in packages)])


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, data)


def _cache_folder(root: str | Path | None, size: int) -> Path:
    base = Path(root).expanduser() if root is not None else default_cache_dir()
    return base / "dicebear" / _versions() / f"{size}px"


def render_avatar(
    style: str, seed: int, size: int, root: str | Path | None = None
) -> tuple[Path, Path | None]:
    """The cached picture and line art of ``(style, seed)`` at ``size`` px, rendered if missing.

    Returns:
        ``(picture, line_art)`` PNG paths: the picture RGBA on a transparent background, the
        line art 1-bit (white = ink); ``line_art`` is None for :data:`PICTURE_STYLES`.
    """
    folder = _cache_folder(root, size) / style
    line = folder / f"{seed}.line.png" if style in LINE_ART_STYLES else None
    svg = functools.partial(avatar_svg, style, seed)
    return render_pair(svg, folder / f"{seed}.png", line, size, write=_write_atomic)


class AvatarDataset(Dataset):
    """One split of the DiceBear avatars, rendered on first access and cached on disk.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        image_size: side ``S`` of every image, in pixels (rendered at that size).
        count: avatars across all splits and styles.
        styles: DiceBear style names (default: :data:`LINE_ART_STYLES` + :data:`PICTURE_STYLES`).
        heldout_styles: styles (with their ``-neutral`` variants) only in val and test.
        fractions: ``(train, val, test)`` fractions of each training style's seeds.
        split_seed: seed of the split hash.
        cache_dir: cache root (default ``$PIREC_CACHE_DIR`` or ``~/.cache/pirec_lightning``).
        with_line_art: items are dicts with the line art; False: the image tensor alone (as
            :class:`~pirec_lightning.data.folder.FolderImageDataset`).
        packed: items are one (4, S, S) tensor, the picture and its line art as a fourth
            channel (1 = ink, 0 = paper; all -1 for an item without line art), which the data
            module caches, batches and augments as it does pictures (overrides
            ``with_line_art``).

    Items: ``{"image": (3, S, S) float32 in [0, 1] on white, "line_art": (1, S, S) float32 in
    {0, 1} (1 = ink; zeros without line art), "has_line_art": bool tensor ()}``.

    Raises:
        DataError: dicebear-core/dicebear-styles missing, a bad style or licence, an empty split.
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 128,
        count: int = 20_000,
        styles: Sequence[str] | None = None,
        heldout_styles: Sequence[str] = HELDOUT_STYLES,
        fractions: Sequence[float] = (0.9, 0.05, 0.05),
        split_seed: int = 0,
        cache_dir: str | Path | None = None,
        with_line_art: bool = True,
        packed: bool = False,
    ) -> None:
        if not (isinstance(image_size, int) and image_size > 0):
            raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
        _require("dicebear")
        _require("resvg_py")
        self.styles = avatar_styles(styles)  # licences checked before any work
        names = [s.name for s in self.styles]
        _check_heldout(heldout_styles, names)
        self.items = avatar_items(split, names, heldout_styles, count, fractions, split_seed)
        if not self.items:
            raise DataError(
                f"avatar split {split!r} is empty (count {count}, fractions {tuple(fractions)}): "
                "raise data.avatars.count or give the split a positive fraction"
            )
        self.split = split
        self.heldout_families = {_family(h) for h in heldout_styles}
        self.image_size = image_size
        self.cache_dir = cache_dir
        self.with_line_art = with_line_art
        self.packed = packed

    def __len__(self) -> int:
        return len(self.items)

    def group(self, index: int) -> str:
        """``avatars/<style>``: the style of item ``index`` (for per-style reports)."""
        return f"avatars/{self.items[index][0]}"

    def heldout(self, group: str) -> bool:
        """Whether ``group`` (``avatars/<style>``) is a held-out style (or its -neutral twin)."""
        return _family(group.removeprefix("avatars/")) in self.heldout_families

    def __getitem__(self, index: int) -> Any:
        """Item ``index``: see the class docstring (rendered now if not cached)."""
        style, seed = self.items[index]
        picture, line = render_avatar(style, seed, self.image_size, self.cache_dir)
        return load_pair(picture, line, self.image_size, self.packed, self.with_line_art)


def check_avatar_settings(avatars: Mapping[str, Any] | None) -> None:
    """Check ``data.avatars`` (``count``, ``styles``, ``heldout_styles``, ``cache_dir``).

    Raises:
        DataError: one line naming the key and the fix.
    """
    avatars = dict(avatars or {})
    extra = set(avatars) - {"count", "styles", "heldout_styles", "cache_dir"}
    if extra:
        raise DataError(f"unknown data.avatars keys {sorted(extra)}: use count, styles, ...")
    count = avatars.get("count", 20_000)
    if not (isinstance(count, int) and not isinstance(count, bool) and count > 0):
        raise DataError(f"data.avatars.count must be a positive integer, got {count!r}")
    styles = avatars.get("styles")
    names = [s.name for s in avatar_styles(styles)]
    held = avatars.get("heldout_styles", HELDOUT_STYLES) or ()
    _check_heldout(held, names)
    avatar_items("all", names, held, count)
