"""Lines as people draw them: stroke width, thinning and dark-contour outlines, batched on the device.

PI-REC is trained on 1-pixel Canny edges, but its point is drawing: a brush stroke is several
pixels wide, there is one line per outline (Canny puts two on either side of a dark stroke), and
the lines follow the dark contours of the picture rather than every colour boundary. This module
gives the ops that bridge the two:

- :func:`dilate_edges`: strokes widened by a per-sample radius (a 1-pixel line becomes 2r + 1
  pixels wide), as ``cv2.dilate`` with a disk;
- :func:`thin_edges`: Zhang-Suen thinning to 1-pixel lines, the parallel algorithm behind
  ``skimage.morphology.skeletonize``;
- :func:`dark_contours`: one line along each dark stroke of the image (its centre line) and
  around each dark blob;
- :func:`augment_drawn_edges`: the training-time restyling under the confusion config;
- :func:`picture_regions`: the picture's own flat colour regions, whose boundaries are the
  outlines a person traces;
- :func:`drawn_lines`: a synthetic "drawn lines" edge map for evaluation sets;
- :func:`prepare_edges`: what inference does with an edge map of a given ``edge_style``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pirec_lightning.preprocess._checks import check_images
from pirec_lightning.preprocess.color import color_domain

__all__ = [
    "EDGE_STYLES",
    "ThinEdges",
    "augment_drawn_edges",
    "dark_contours",
    "dilate_edges",
    "disk",
    "drawn_lines",
    "picture_regions",
    "prepare_edges",
    "thin_edges",
]

#: ``canny``: edges as the model was trained on (Canny, 1 pixel); ``drawn``: strokes drawn by a
#: person, thinned to 1-pixel lines before the model sees them
EDGE_STYLES = ("canny", "drawn")
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def _check_edges(edges: object) -> None:
    check_images(edges, channels=1, name="edges")


def disk(radius: int, device: torch.device | str | None = None) -> Tensor:
    """The (2r + 1, 2r + 1) disk ``x^2 + y^2 <= r^2`` (``skimage.morphology.disk``), float.

    >>> disk(1).int().tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    """
    r = torch.arange(-radius, radius + 1, device=device)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).float()


def dilate_edges(edges: Tensor, radius: int | Tensor, max_radius: int | None = None) -> Tensor:
    """Widen strokes by ``radius`` pixels per sample (dilation by a disk; 0 keeps them).

    Args:
        edges: (B, 1, H, W) in {0, 1}.
        radius: int or (B,) int tensor, >= 0. A 1-pixel line becomes ``2 * radius + 1`` wide.
        max_radius: the largest radius ``radius`` can hold, known on the host (e.g. the top of
            a drawn range): every radius up to it is computed and picked per sample, with no
            host sync and no check of ``radius``. None reads the radii present instead.

    Returns:
        (B, 1, H, W) in {0, 1}, same dtype; pixels outside the image count as background.

    >>> line = torch.zeros(1, 1, 7, 7); line[..., 3, :] = 1
    >>> dilate_edges(line, 1)[0, 0, :, 3].tolist()
    [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    _check_edges(edges)
    radius = torch.as_tensor(radius, device=edges.device).long().expand(len(edges))
    if max_radius is not None:
        out = edges
        for r in range(1, int(max_radius) + 1):
            kernel = disk(r, edges.device).to(edges.dtype)[None, None]
            grown = (F.conv2d(edges, kernel, padding=r) > 0.5).to(edges.dtype)
            out = torch.where((radius == r).view(-1, 1, 1, 1), grown, out)
        return out
    if (radius < 0).any():
        raise ValueError(f"radius must be >= 0, got {radius.tolist()}")
    out = edges.clone()
    for r in radius.unique().tolist():
        if r == 0:
            continue
        picked = radius == r
        kernel = disk(r, edges.device).to(edges.dtype)[None, None]
        widened = F.conv2d(edges[picked], kernel, padding=r) > 0.5
        out[picked] = widened.to(edges.dtype)
    return out


def _neighbours(x: Tensor) -> list[Tensor]:
    """P2..P9 of Zhang-Suen (N, NE, E, SE, S, SW, W, NW) of a (B, 1, H, W) map, zero outside."""
    p = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    offsets = [(0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0)]
    return [p[..., i : i + h, j : j + w] for i, j in offsets]


def thin_edges(edges: Tensor, max_iterations: int | None = None, early_stop: bool = True) -> Tensor:
    """Thin strokes to 1-pixel lines (Zhang & Suen 1984, both sub-iterations in parallel).

    Args:
        edges: (B, 1, H, W) in {0, 1}.
        max_iterations: stop after this many passes (default: until nothing changes).
        early_stop: stop as soon as a pass removes nothing (reads one flag per pass from the
            device); False runs exactly ``max_iterations`` passes with no host sync (a stroke
            ``2 * max_iterations`` pixels wide is fully thinned).

    Returns:
        (B, 1, H, W) in {0, 1}, same dtype: a subset of ``edges`` with the same connectivity.

    >>> bar = torch.zeros(1, 1, 9, 12); bar[..., 3:6, 2:10] = 1
    >>> thin_edges(bar).sum(-2).amax().item()
    1.0
    """
    _check_edges(edges)
    x = (edges > 0.5).to(torch.uint8)
    limit = max_iterations if max_iterations is not None else sum(edges.shape[-2:])
    for _ in range(limit):
        changed = False
        for step in (0, 1):
            n = _neighbours(x)
            count = sum(v.int() for v in n)
            ring = n + n[:1]
            transitions = sum(((a == 0) & (b == 1)).int() for a, b in zip(ring[:-1], ring[1:]))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (x == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if not early_stop:
                x = x * (~remove).to(x.dtype)
                continue
            if remove.any():
                x = x * (~remove).to(x.dtype)
                changed = True
        if early_stop and not changed:
            break
    return x.to(edges.dtype)


class ThinEdges(nn.Module):
    """Module form of :func:`thin_edges`: (B, 1, H, W) in {0, 1} -> 1-pixel lines."""

    def forward(self, edges: Tensor) -> Tensor:
        return thin_edges(edges)


def _gray(images: Tensor) -> Tensor:
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def dark_contours(images: Tensor, threshold: float = 0.25, stroke_radius: int = 2) -> Tensor:
    """One line per dark contour: the centre line of each dark stroke up to
    ``2 * stroke_radius + 1`` pixels wide, and the outline of each wider dark blob.

    Args:
        images: (B, 3, H, W) in [0, 1].
        threshold: grey level (``rgb2gray`` weights) below which a pixel is dark.
        stroke_radius: strokes that a disk of this radius erodes away count as lines.

    Returns:
        (B, 1, H, W) in {0, 1}, 1-pixel lines.

    >>> image = torch.ones(1, 3, 16, 16); image[..., 7:10, 2:14] = 0  # a 3-px black stroke
    >>> dark_contours(image)[0, 0, :, 8].nonzero().flatten().tolist()
    [8]
    """
    check_images(images, channels=3)
    dark = (_gray(images) < threshold).to(images.dtype)
    kernel = disk(stroke_radius, images.device).to(images.dtype)[None, None]
    # erosion = not dilation of the complement; outside the image is not dark
    eroded = 1 - (F.conv2d(1 - dark, kernel, padding=stroke_radius) > 0.5).to(images.dtype)
    # thin strokes vanish under the erosion and stay whole; blobs keep a rim
    return thin_edges(dark * (1 - eroded))


def _region_boundaries(regions: Tensor) -> Tensor:
    """1-pixel lines where a (B, 3, H, W) piecewise-constant image changes (one per boundary)."""
    step = 0.5 / 255
    right = (regions[..., :, 1:] - regions[..., :, :-1]).abs().amax(1, keepdim=True) > step
    down = (regions[..., 1:, :] - regions[..., :-1, :]).abs().amax(1, keepdim=True) > step
    out = torch.zeros_like(regions[:, :1], dtype=torch.bool)
    out[..., :, :-1] |= right
    out[..., :-1, :] |= down
    return out


def picture_regions(
    images: Tensor,
    k: int | Tensor = 8,
    median_kernel: int = 3,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The picture's own flat colour regions: a light median (noise, anti-aliasing) and its
    colours quantized to ``k`` by K-means, with no second median. Their boundaries are the
    outlines of the picture itself, what a person tracing it draws; the colour domain's
    boundaries are not (its wide medians move and merge them).

    Args:
        images: (B, 3, H, W) in [0, 1].
        k: number of colours, an int or a (B,) integer tensor.
        median_kernel: odd median kernel before the quantization.
        generator: random source of the K-means draws, on the images' device.

    Returns:
        (B, 3, H, W) in [0, 1], piecewise constant.
    """
    return color_domain(images, median_kernel, k, 1, generator=generator)


def drawn_lines(
    images: Tensor,
    *,
    stroke_radius: int = 1,
    threshold: float = 0.25,
    regions: Tensor | None = None,
) -> Tensor:
    """A synthetic "drawn lines" edge map: the picture's outlines as a person would ink them.

    One 1-pixel line per outline (the dark contours of :func:`dark_contours`, plus the boundaries
    between the flat regions of ``regions``, e.g. a colour domain) widened into brush strokes of
    ``2 * stroke_radius + 1`` pixels. Unlike Canny there is one line per outline (not one on each
    side of a dark stroke) and the lines are thick.

    Args:
        images: (B, 3, H, W) in [0, 1].
        stroke_radius: brush radius in pixels (0: 1-pixel lines).
        threshold: grey level below which a pixel is ink (see :func:`dark_contours`).
        regions: optional (B, 3, H, W) piecewise-constant image whose region boundaries are
            outlined too (the evaluation sets use the colour domain at the validation settings).

    Returns:
        (B, 1, H, W) in {0, 1}.

    >>> image = torch.ones(1, 3, 16, 16); image[..., 7:10, 2:14] = 0
    >>> drawn_lines(image)[0, 0, :, 8].nonzero().flatten().tolist()
    [7, 8, 9]
    """
    lines = dark_contours(images, threshold)
    if regions is not None:
        check_images(regions, channels=3, name="regions")
        lines = torch.maximum(lines, thin_edges(_region_boundaries(regions).to(images.dtype)))
    return dilate_edges(lines, stroke_radius)


def augment_drawn_edges(
    edges: Tensor,
    images: Tensor,
    *,
    probability: float,
    dilation: tuple[int, int] = (0, 2),
    thinning: float = 0.5,
    contours: float = 0.5,
    threshold: float = 0.25,
    outlines: float = 0.0,
    outline_k: tuple[int, int] = (4, 8),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Restyle a fraction of a batch's edge maps as drawn lines (training only).

    Each sample is restyled with probability ``probability``. A restyled sample's Canny edges are
    replaced, with probability ``outlines``, by the picture's outlines as a person traces them
    (:func:`drawn_lines` of its :func:`picture_regions` with K drawn from ``outline_k``: one line
    per outline, dark strokes by their centre line); otherwise it keeps its Canny edges and gets
    the image's :func:`dark_contours` added with probability ``contours``. Its strokes are then
    widened by a radius drawn uniformly from ``dilation`` (inclusive) and thinned back to 1 pixel
    with probability ``thinning`` (what ``edge_style="drawn"`` does at inference).

    Args:
        edges: (B, 1, H, W) in {0, 1} (Canny).
        images: (B, 3, H, W) in [0, 1], the images the edges come from.
        probability, thinning, contours, outlines: per-sample probabilities in [0, 1].
        dilation: (lo, hi) stroke radius in pixels at the working size, 0 <= lo <= hi.
        threshold: grey level below which a pixel is dark.
        outline_k: (lo, hi) colours of the picture's regions for ``outlines``, inclusive.
        generator: random source on the edges' device.

    Returns:
        (B, 1, H, W) in {0, 1}; samples not restyled are unchanged.
    """
    _check_edges(edges)
    batch, device = len(edges), edges.device
    draws = torch.rand((4, batch), generator=generator, device=device)
    radius = torch.randint(
        int(dilation[0]), int(dilation[1]) + 1, (batch,), generator=generator, device=device
    )
    restyled = draws[0] < probability
    if not restyled.any():
        return edges
    out = edges.clone()
    picked = restyled.nonzero().flatten()
    lines = edges[picked]
    replace = draws[3][picked] < outlines
    add = ((draws[1][picked] < contours) & ~replace).view(-1, 1, 1, 1)
    if add.any():
        lines = torch.where(
            add, torch.maximum(lines, dark_contours(images[picked], threshold)), lines
        )
    if replace.any():
        traced = picked[replace]
        k = torch.randint(
            int(outline_k[0]),
            int(outline_k[1]) + 1,
            (len(traced),),
            generator=generator,
            device=device,
        )
        regions = picture_regions(images[traced], k, generator=generator)
        lines[replace] = drawn_lines(
            images[traced], stroke_radius=0, threshold=threshold, regions=regions
        ).to(lines.dtype)
    lines = dilate_edges(lines, radius[picked], max_radius=int(dilation[1]))
    thin = (draws[2][picked] < thinning).view(-1, 1, 1, 1)
    if thin.any():
        lines = torch.where(thin, thin_edges(lines), lines)
    out[picked] = lines
    return out


def use_line_art(
    edges: Tensor,
    line_art: Tensor,
    available: Tensor,
    *,
    probability: float,
    dilation: tuple[int, int] = (0, 1),
    thinning: float = 0.5,
    thin_passes: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace a fraction of a batch's edge maps by the artists' own line art (training only),
    with no host sync.

    Each sample that has line art takes it instead of its edges with probability
    ``probability``; its strokes are widened by a radius drawn uniformly from ``dilation``
    (inclusive) and thinned to 1-pixel lines with probability ``thinning`` (what
    ``edge_style="drawn"`` does at inference), so the model reads line art both as drawn and
    thinned.

    Args:
        edges: (B, 1, H, W) in {0, 1} (Canny, or already restyled).
        line_art: (B, 1, H, W) in {0, 1}, 1 = ink.
        available: (B,) bool, the samples that have line art.
        probability, thinning: per-sample probabilities in [0, 1].
        dilation: (lo, hi) stroke radius in pixels at the working size, 0 <= lo <= hi.
        thin_passes: thinning passes (each removes one pixel per side).
        generator: random source on the edges' device.

    Returns:
        (B, 1, H, W) in {0, 1}, the dtype of ``edges``.

    >>> edges, art = torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    >>> use_line_art(edges, art, torch.tensor([True, False]), probability=1.0).sum((1, 2, 3))
    tensor([64.,  0.])
    """
    _check_edges(edges)
    batch, device = len(edges), edges.device
    draws = torch.rand((2, batch), generator=generator, device=device)
    lo, hi = int(dilation[0]), int(dilation[1])
    radius = torch.randint(lo, hi + 1, (batch,), generator=generator, device=device)
    lines = (line_art > 0.5).to(edges.dtype)
    widened = dilate_edges(lines, radius, max_radius=hi)  # the range is known: nothing is read
    thin = (draws[1] < thinning).view(-1, 1, 1, 1)
    drawn = torch.where(thin, thin_edges(widened, thin_passes, early_stop=False), widened)
    use = ((draws[0] < probability) & available.to(torch.bool)).view(-1, 1, 1, 1)
    return torch.where(use, drawn, edges)


def prepare_edges(edges: Tensor, edge_style: str = "canny") -> Tensor:
    """What the model gets from an edge map of ``edge_style`` (see :data:`EDGE_STYLES`).

    Args:
        edges: (B, 1, H, W) in [0, 1] (binarized at 0.5).
        edge_style: ``"canny"`` keeps the map; ``"drawn"`` thins its strokes to 1 pixel.

    Returns:
        (B, 1, H, W) in {0, 1}.
    """
    if edge_style not in EDGE_STYLES:
        raise ValueError(
            f"unknown edge_style {edge_style!r}; valid styles: {', '.join(EDGE_STYLES)}"
        )
    _check_edges(edges)
    binary = (edges > 0.5).to(edges.dtype)
    return thin_edges(binary) if edge_style == "drawn" else binary
