"""Standalone SVGs from an Iconify JSON icon set (``icons.json`` of ``@iconify-json/<set>``).

An icon set is ``{"prefix", "icons": {name: {"body", ...}}, "aliases": {name: {"parent", ...}},
"left", "top", "width", "height"}``; an icon or alias may set ``left``, ``top``, ``width``,
``height`` (its viewBox; the set's values, else 0, 0, 16, 16), ``rotate`` (quarter turns),
``hFlip``, ``vFlip`` and ``hidden``. The rules follow Iconify's own library (``@iconify/utils``,
``getIconData`` and ``iconToSVG``), written again here:

- **Aliases.** An alias names its ``parent`` (an icon or another alias). Walking from the alias
  to the icon, the viewBox values of the nearest level that sets them win; the transformations
  add up: rotations sum modulo 4, flips combine by exclusive or.
- **Transformations.** A flip in both directions is a half turn. A single flip mirrors the body
  inside its viewBox (``translate`` by the box's far edge, then ``scale(-1 1)`` or
  ``scale(1 -1)``) and moves the box to the origin. A rotation turns the body about the box's
  centre (a quarter turn about ``(h/2 + top, h/2 + top)``, three quarters about
  ``(w/2 + left, w/2 + left)``, as Iconify does) and, for an odd number of quarter turns,
  swaps the box's ``left``/``top`` and ``width``/``height``. The rotation is applied after the
  flip (it comes first in the transform list).

>>> data = {"prefix": "x", "width": 24, "height": 24,
...         "icons": {"a": {"body": "<path d='M0 0h4v4z'/>"}},
...         "aliases": {"b": {"parent": "a", "hFlip": True}}}
>>> icon_svg(data, "b")[:88]
'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g transform="translate(24 0'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["IconData", "icon_data", "icon_names", "icon_root", "icon_svg"]

_BOX = ("left", "top", "width", "height")
_BOX_DEFAULTS = {"left": 0.0, "top": 0.0, "width": 16.0, "height": 16.0}
#: deeper alias chains are refused (Iconify's own limit is the same order)
MAX_DEPTH = 36


@dataclass(frozen=True)
class IconData:
    """One icon resolved: its SVG body, viewBox and transformations."""

    body: str
    left: float
    top: float
    width: float
    height: float
    rotate: int = 0
    h_flip: bool = False
    v_flip: bool = False


_CHANGES = (*_BOX, "rotate", "hFlip", "vFlip")


def icon_names(data: Mapping[str, Any], hidden: bool = False, copies: bool = False) -> list[str]:
    """The names of ``data``'s distinct pictures, sorted.

    Args:
        hidden: keep icons marked ``hidden`` (old names Iconify keeps for compatibility).
        copies: keep aliases that only rename their parent (the same picture); by default an
            alias is kept only when it changes the viewBox, rotates or flips.
    """
    names = [n for n, p in (data.get("icons") or {}).items() if hidden or not p.get("hidden")]
    for name, props in (data.get("aliases") or {}).items():
        if (hidden or not props.get("hidden")) and (copies or any(k in props for k in _CHANGES)):
            names.append(name)
    return sorted(names)


def icon_root(data: Mapping[str, Any], name: str) -> str:
    """The icon an alias resolves to (``name`` itself for an icon).

    Raises:
        KeyError: as :func:`icon_data`.
    """
    icons, aliases = data.get("icons") or {}, data.get("aliases") or {}
    for _ in range(MAX_DEPTH):
        if name in icons:
            return name
        if name not in aliases:
            raise KeyError(f"icon set {data.get('prefix')!r} has no icon {name!r}")
        name = aliases[name].get("parent", "")
    raise KeyError(f"icon set {data.get('prefix')!r}: alias chain is too long")


def icon_data(data: Mapping[str, Any], name: str) -> IconData:
    """Resolve icon or alias ``name`` of the set ``data`` (aliases, defaults, transformations).

    Raises:
        KeyError: no such icon, an alias whose parent is missing, or an alias loop.
    """
    icons, aliases = data.get("icons") or {}, data.get("aliases") or {}
    box: dict[str, float] = {}
    rotate, h_flip, v_flip = 0, False, False
    current = name
    for _ in range(MAX_DEPTH):
        props = icons.get(current) or aliases.get(current)
        if props is None:
            raise KeyError(f"icon set {data.get('prefix')!r} has no icon {current!r}")
        for key in _BOX:  # the nearest level that sets a value wins
            if key not in box and key in props:
                box[key] = float(props[key])
        rotate = (rotate + int(props.get("rotate", 0))) % 4
        h_flip ^= bool(props.get("hFlip", False))
        v_flip ^= bool(props.get("vFlip", False))
        if current in icons:
            for key in _BOX:
                box.setdefault(key, float(data.get(key, _BOX_DEFAULTS[key])))
            return IconData(str(props["body"]), **box, rotate=rotate, h_flip=h_flip, v_flip=v_flip)
        current = props.get("parent", "")
    raise KeyError(f"icon set {data.get('prefix')!r}: alias chain of {name!r} is too long")


def _number(value: float) -> str:
    return f"{value + 0.0:g}"  # never "-0"


def _transformed(icon: IconData) -> tuple[str, tuple[float, float, float, float]]:
    """The body wrapped in its flip and rotation, and the viewBox after them."""
    left, top, width, height = icon.left, icon.top, icon.width, icon.height
    steps: list[str] = []
    rotation = icon.rotate
    if icon.h_flip and icon.v_flip:
        rotation += 2
    elif icon.h_flip:
        steps = [f"translate({_number(width + left)} {_number(-top)})", "scale(-1 1)"]
        left = top = 0.0
    elif icon.v_flip:
        steps = [f"translate({_number(-left)} {_number(height + top)})", "scale(1 -1)"]
        left = top = 0.0
    rotation %= 4
    if rotation == 1:
        centre = _number(height / 2 + top)
        steps.insert(0, f"rotate(90 {centre} {centre})")
    elif rotation == 2:
        steps.insert(0, f"rotate(180 {_number(width / 2 + left)} {_number(height / 2 + top)})")
    elif rotation == 3:
        centre = _number(width / 2 + left)
        steps.insert(0, f"rotate(-90 {centre} {centre})")
    if rotation % 2:
        left, top, width, height = top, left, height, width
    body = icon.body
    if steps:
        body = f'<g transform="{" ".join(steps)}">{body}</g>'
    return body, (left, top, width, height)


def icon_svg(data: Mapping[str, Any], name: str, square: bool = True) -> str:
    """A standalone SVG document of icon ``name`` (no size: it fills any render).

    Args:
        square: widen the shorter side of the viewBox, centred, so a square render keeps the
            icon's proportions (resvg stretches a viewBox to the size asked for).

    Raises:
        KeyError: as :func:`icon_data`.
    """
    body, box = _transformed(icon_data(data, name))
    left, top, width, height = box
    if square and width != height:
        side = max(width, height)
        box = (left - (side - width) / 2, top - (side - height) / 2, side, side)
    view_box = " ".join(_number(v) for v in box)
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{view_box}">{body}</svg>'
