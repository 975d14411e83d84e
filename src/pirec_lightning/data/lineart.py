"""Line art of any SVG drawing, separated from the drawing's own SVG structure.

Serves the DiceBear avatars (:mod:`.avatars`) and the Iconify icon sets (:mod:`.icons`). The ink
is found from the SVG's structure, then its thickness is measured:

1. **Which elements are ink.** Every painted part of every shape (its fill and its stroke, each
   on its own) gets a unique label colour; parts under 50 % opacity or with a shading
   ``mix-blend-mode`` (multiply, overlay, ...) are not painted, lightening blends (difference,
   screen, ...) are painted but never ink. The labelled SVG is rendered once without
   anti-aliasing, at a multiple of ``size`` of at least 256 px: each pixel then names the part
   *visible* there, with the occlusion of the real picture (an outline drawn as a black shape
   under a slightly smaller coloured one shows only as its visible rim). Ink candidates are the
   dark parts (paint luma below :data:`DARK_LUMA`, fill or stroke) and the strokes of any colour
   (a coloured stroke is a drawn line, e.g. croodles' hair); a coloured stroke counts only where
   it is thin (its visible part within :data:`LINE_HALF_WIDTH` of another part).
2. **Thin or filled.** In the union of the candidates, parts thicker than a line (distance
   transform above :data:`LINE_HALF_WIDTH`, grown back by a morphological opening: black hair,
   pupils, sunglasses, scribbled fills) are replaced by their outline, :data:`OUTLINE_WIDTH`
   wide; the canvas border is not an outline. With the rule ``thick="thin"`` (sets drawn with
   thick strokes, whose outline would be a double contour) they are kept whole here and thinned
   to their centre line at the output size instead (Zhang-Suen,
   :func:`~pirec_lightning.preprocess.drawn.thin_edges`).
3. **Output size.** The mask is area-averaged to ``size`` (a pixel is ink when at least
   :data:`COVERAGE` of it is) and the thick-to-outline rule runs once more at that size with
   twice the half width, so lines merged by the downsampling never leave a filled blob.

Widths are given at 128 px and scale with the image. A set's rules (:class:`LineArtRules`) say
how faint a part may be before it is left out (faint drop shadows are neither ink nor cover),
which paint is dark, and what happens to thick ink. Styles and sets whose ink this recovers
(:data:`pirec_lightning.data.avatars.LINE_ART_STYLES`, the ``line_art`` sets of
:mod:`.icons`) are chosen by :func:`line_art_figures`.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageColor

from pirec_lightning.preprocess.drawn import thin_edges

__all__ = [
    "COVERAGE",
    "DARK_LUMA",
    "LINE_HALF_WIDTH",
    "OUTLINE_WIDTH",
    "LineArtRules",
    "line_art",
    "line_art_figures",
    "render_png",
    "render_rgb",
]

#: paint colours darker than this (Rec. 601 luma in [0, 1]) are ink
DARK_LUMA = 0.2
#: at 128 px: a part is a line where no point is farther than this from its edge
LINE_HALF_WIDTH = 1.5
#: at 128 px: width of the outline that replaces a filled dark area
OUTLINE_WIDTH = 1.0
#: fraction of an output pixel the fine mask must cover to be ink
COVERAGE = 0.35
#: side of the fine label render (at least; a multiple of the output size)
FINE_SIZE = 256
#: parts painted with less opacity are left out (neither ink nor cover)
MIN_OPACITY = 0.5
THICK_RULES = ("outline", "thin")


@dataclass(frozen=True)
class LineArtRules:
    """How a set's SVGs give their line art (the defaults serve the DiceBear avatars).

    Args:
        min_opacity: parts painted with less opacity (their own times their groups') are
            neither ink nor cover: faint drop shadows (``opacity=".15"``) are left out.
        dark_luma: paint darker than this (luma in [0, 1]) is ink.
        thick: ``outline`` replaces ink thicker than a line by its outline (filled dark areas:
            hair, pupils); ``thin`` thins it to its centre line (sets drawn in thick strokes,
            whose outline would be a double contour).
    """

    min_opacity: float = MIN_OPACITY
    dark_luma: float = DARK_LUMA
    thick: str = "outline"

    def __post_init__(self) -> None:
        if self.thick not in THICK_RULES:
            raise ValueError(f"LineArtRules.thick must be one of {THICK_RULES}, got {self.thick!r}")


_SHAPES = {"path", "rect", "circle", "ellipse", "line", "polyline", "polygon"}
# painted only through a reference, or not at all: left as they are
_NOT_PAINTED = {"clipPath", "mask", "linearGradient", "radialGradient", "pattern", "filter"}
_INHERITED = ("fill", "stroke", "fill-opacity", "stroke-opacity")
# blend modes that lighten or invert (a white print on a black shirt): they hide the ink below;
# the others (multiply, overlay, ...) are shading and are left out
_LIGHTENING = {"difference", "exclusion", "screen", "lighten", "color-dodge"}


def render_png(svg: str, size: int) -> bytes:
    """Rasterize ``svg`` with resvg to a ``size`` x ``size`` RGBA PNG (transparent background)."""
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, skip_system_fonts=True)
    return bytes(png)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _props(element: ET.Element) -> dict[str, str]:
    props = {_local(key): value for key, value in element.attrib.items()}
    for declaration in props.pop("style", "").split(";"):
        if ":" in declaration:
            key, value = declaration.split(":", 1)
            props[key.strip()] = value.strip()
    return props


def _number(value: str) -> float:
    value = value.strip()
    return float(value[:-1]) / 100.0 if value.endswith("%") else float(value)


def _luma(paint: str) -> float | None:
    """Luma in [0, 1] of a plain colour; None for ``none``, gradients and unknown paints."""
    try:
        red, green, blue = ImageColor.getrgb(paint.strip())[:3]
    except ValueError:
        return None
    return (0.299 * red + 0.587 * green + 0.114 * blue) / 255.0


def render_rgb(svg: str, size: int) -> np.ndarray:
    """``svg`` rendered at ``size`` px on white: ``(size, size, 3)`` uint8 RGB."""
    rgba = np.asarray(Image.open(io.BytesIO(render_png(svg, size))).convert("RGBA"))
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return rgb.round().astype(np.uint8)


def _labelled(svg: str, rules: LineArtRules) -> tuple[str, np.ndarray, np.ndarray]:
    """The SVG with each visible fill and stroke painted in its own label colour.

    Returns:
        ``(svg, dark, stroke)``: label ``i`` (colour ``#%06x``) is a dark part when
        ``dark[i]``, a stroke when ``stroke[i]``; label 0 is the background.
    """
    root = ET.fromstring(svg)
    for child in [c for c in root if _local(c.tag) == "metadata"]:
        root.remove(child)
    dark, stroke = [False], [False]

    def walk(element: ET.Element, inherited: dict[str, str], opacity: float, blend: str) -> None:
        props = _props(element)
        tag = _local(element.tag)
        if tag in _NOT_PAINTED:
            return
        state = {**inherited, **{k: props[k] for k in _INHERITED if k in props}}
        opacity *= _number(props.get("opacity", "1"))
        blend = props.get("mix-blend-mode", blend)
        shading = blend not in _LIGHTENING and blend != "normal"
        hidden = props.get("display") == "none" or props.get("visibility") == "hidden"
        for key in ("opacity", "style", "filter", "fill-opacity", "stroke-opacity"):
            element.attrib.pop(key, None)
        if tag not in _SHAPES:
            if shading or hidden or opacity < rules.min_opacity:  # does not hide what is below
                element.set("display", "none")
                return
            for child in element:
                walk(child, state, opacity, blend)
            return
        for kind in ("fill", "stroke"):
            paint = state.get(kind, "black" if kind == "fill" else "none")
            alpha = opacity * _number(state.get(f"{kind}-opacity", "1"))
            faint = alpha < rules.min_opacity
            if paint.strip() in ("none", "transparent") or shading or hidden or faint:
                element.set(kind, "none")
                continue
            luma = _luma(paint)
            element.set(kind, f"#{len(dark):06x}")
            dark.append(luma is not None and luma < rules.dark_luma and blend == "normal")
            stroke.append(kind == "stroke")

    walk(root, {"fill": root.get("fill", "black")}, 1.0, "normal")
    root.set("shape-rendering", "crispEdges")
    text = ET.tostring(root, encoding="unicode")
    return text, np.array(dark), np.array(stroke)


def _labels(svg: str, size: int, rules: LineArtRules) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels (size, size) int64, dark, stroke)``: the part visible at each pixel."""
    text, dark, stroke = _labelled(svg, rules)
    rgba = np.asarray(Image.open(io.BytesIO(render_png(text, size))).convert("RGBA"))
    labels = (rgba[..., 0].astype(np.int64) << 16) | (rgba[..., 1].astype(np.int64) << 8)
    labels |= rgba[..., 2]
    labels[(rgba[..., 3] < 128) | (labels >= len(dark))] = 0
    return labels, dark, stroke


def _disk(radius: float) -> np.ndarray:
    side = 2 * max(1, round(radius)) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel of ``mask`` to its edge; beyond the canvas the mask continues."""
    padded = np.pad(mask, 1, mode="edge").astype(np.uint8)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _outline_thick(mask: np.ndarray, half_width: float, outline: float) -> np.ndarray:
    """``mask`` with its parts thicker than ``2 * half_width`` replaced by their outline."""
    distance = _distance_inside(mask)
    core = (distance > half_width).astype(np.uint8)
    thick = cv2.dilate(core, _disk(half_width)).astype(bool) & mask  # a morphological opening
    return (mask & ~thick) | (thick & (distance <= outline))


def line_art(svg: str, size: int, rules: LineArtRules | None = None) -> np.ndarray:
    """The ink of an SVG drawing as a ``(size, size)`` bool mask (True = ink).

    Args:
        svg: a standalone SVG document (square viewBox).
        size: side of the mask in pixels.
        rules: the set's rules (default :class:`LineArtRules`: the avatars').

    Deterministic: the same SVG, size and rules give the same pixels.
    """
    rules = rules or LineArtRules()
    fine = size * max(1, -(-FINE_SIZE // size))
    scale = fine / 128.0
    labels, dark, stroke = _labels(svg, fine, rules)
    dark_px, stroke_px = dark[labels], stroke[labels]
    # a coloured stroke is a line only where it is thin: measured on its own visible part
    edges = np.zeros(labels.shape, bool)
    step_x, step_y = labels[:, 1:] != labels[:, :-1], labels[1:] != labels[:-1]
    edges[:, 1:] |= step_x
    edges[:, :-1] |= step_x
    edges[1:] |= step_y
    edges[:-1] |= step_y
    to_edge = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    colored = stroke_px & ~dark_px
    wide = cv2.dilate(
        (colored & (to_edge > LINE_HALF_WIDTH * scale)).astype(np.uint8),
        _disk(LINE_HALF_WIDTH * scale),
    )
    ink = dark_px | (colored & ~wide.astype(bool))
    if rules.thick == "outline":
        ink = _outline_thick(ink, LINE_HALF_WIDTH * scale, OUTLINE_WIDTH * scale)
    if fine != size:
        coverage = cv2.resize(ink.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        ink = coverage >= COVERAGE
    if rules.thick == "thin":  # the centre line of every stroke, 1 px wide
        mask = torch.from_numpy(ink)[None, None].float()
        return thin_edges(mask)[0, 0].numpy() > 0.5
    out_scale = max(1.0, size / 128.0)
    # lines merged by the downsampling: thick again at the output size
    return _outline_thick(ink, 2.0 * out_scale, OUTLINE_WIDTH * out_scale)


def line_art_figures(image: np.ndarray, ink: np.ndarray, dark: float = 0.35) -> dict[str, float]:
    """How well ``ink`` draws ``image``'s outlines (the figures used to choose the styles).

    Args:
        image: ``(H, W, 3)`` uint8 RGB picture on white.
        ink: ``(H, W)`` bool line art of it.
        dark: luma in [0, 1] below which a picture pixel is dark.

    Returns:
        ``share``: fraction of pixels that are ink; ``recall``: fraction of the picture's dark
        outline pixels (dark pixels next to a lighter one) within 1 px of ink (1.0 when there are
        none); ``edge_recall``: fraction of the picture's colour edges (Canny) within 2 px of ink;
        ``on_dark``: fraction of ink within 1 px of a dark pixel; ``thickness``: largest
        distance from an ink pixel to the nearest non-ink pixel (px); ``blob``: area (px) of the
        largest ink component left by an opening with a disc 5 px wide at 128 px (scaled with
        the image): a filled area, where lines alone leave nothing.
    """
    luma = (image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
    dark_px = luma < dark
    square = np.ones((3, 3), np.uint8)
    outline = dark_px & cv2.dilate((~dark_px).astype(np.uint8), square).astype(bool)
    near_ink = cv2.dilate(ink.astype(np.uint8), square).astype(bool)
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 50, 150) > 0
    near_ink2 = cv2.dilate(ink.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    near_dark = cv2.dilate(dark_px.astype(np.uint8), square).astype(bool)
    padded = np.pad(ink, 1).astype(np.uint8)
    thickness = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max()
    radius = 2.0 * max(1.0, ink.shape[0] / 128.0)
    opened = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, _disk(radius))
    count, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    return {
        "share": float(ink.mean()),
        "recall": float((outline & near_ink).sum() / outline.sum()) if outline.any() else 1.0,
        "edge_recall": float((edges & near_ink2).sum() / edges.sum()) if edges.any() else 1.0,
        "on_dark": float((ink & near_dark).sum() / ink.sum()) if ink.any() else 1.0,
        "thickness": float(thickness),
        "blob": float(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0.0,
    }
