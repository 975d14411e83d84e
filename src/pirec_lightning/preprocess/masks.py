"""Random free-form hole masks and edge dropout, generated per sample on the batch's device.

Free-form masks follow DeepFill v2: a few brush strokes, each a random walk of vertices with a random
heading, step length and brush width, drawn as a thick polyline with round joints and caps. A stroke
is the set of pixels whose distance to the polyline is at most half the brush width, so all strokes
of a batch are one broadcast distance-to-segment computation. The distance field is evaluated on a
grid about 32 cells across and bilinearly upsampled before thresholding: distance fields are
1-Lipschitz, so the upsampled contour is smooth and close to the exact one, at 1/16 of the cost.

Each mask's hole fraction is steered into ``coverage = (lo, hi)``: per sample a target in the range is
drawn, the number of strokes whose union comes closest to it is kept, and samples that still fall
outside the range are redrawn (a bounded number of times).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pirec_lightning.preprocess._checks import constant

__all__ = ["EdgeDropout", "FreeFormMask", "edge_dropout", "free_form_masks"]

# Stroke shape, relative to min(H, W) (DeepFill v2 uses widths 12-40 and steps up to ~60 at 256 px).
MAX_STROKES = 6
VERTICES = (4, 8)
STEP_LENGTH = (0.08, 0.25)
BRUSH_WIDTH = (0.05, 0.14)
MAX_TURN = 0.6 * math.pi
GRID_CELLS = 32
MAX_ATTEMPTS = 20


def _uniform(shape: tuple[int, ...], low: float, high: float, generator, device) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _reflect(x: Tensor, upper: float) -> Tensor:
    """Fold coordinates into [0, upper] (a triangle wave) so random walks bounce off the borders."""
    if upper <= 0:
        return torch.zeros_like(x)
    x = torch.remainder(x, 2 * upper)
    return torch.where(x > upper, 2 * upper - x, x)


def _stroke_fields(batch: int, height: int, width: int, generator, device) -> Tensor:
    """Signed distance (distance to the polyline minus half the brush width) of MAX_STROKES strokes.

    Returns (batch, MAX_STROKES, h, w) on a coarse grid whose cell centres sit where
    ``F.interpolate(..., size=(height, width), mode="bilinear")`` expects them; negative = inside.
    """
    size = min(height, width)
    shape = (batch, MAX_STROKES)
    steps = VERTICES[1] - 1
    start = torch.rand(*shape, 2, generator=generator, device=device)
    start = start * constant((width - 1.0, height - 1.0), start.dtype, torch.device(device))
    heading = _uniform(shape, 0.0, 2 * math.pi, generator, device)
    turns = _uniform((*shape, steps), -MAX_TURN, MAX_TURN, generator, device)
    length = _uniform((*shape, steps), *STEP_LENGTH, generator, device) * size
    n_vertices = torch.randint(
        VERTICES[0], VERTICES[1] + 1, shape, generator=generator, device=device
    )
    brush = _uniform(shape, *BRUSH_WIDTH, generator, device) * size

    # Steps past a stroke's vertex count have zero length: degenerate segments change nothing.
    length = length * (torch.arange(steps, device=device) < (n_vertices[..., None] - 1))
    angle = heading[..., None] + torch.cumsum(turns, -1)
    walk = torch.stack([torch.cos(angle), torch.sin(angle)], -1) * length[..., None]
    vertices = torch.cat([start[..., None, :], start[..., None, :] + torch.cumsum(walk, -2)], -2)
    vx = _reflect(vertices[..., 0], width - 1.0)
    vy = _reflect(vertices[..., 1], height - 1.0)

    h, w = min(height, GRID_CELLS), min(width, GRID_CELLS)
    gx = (torch.arange(w, device=device) + 0.5) * (width / w) - 0.5
    gy = (torch.arange(h, device=device) + 0.5) * (height / h) - 0.5
    ax, ay = vx[..., :-1, None, None], vy[..., :-1, None, None]  # (B, S, K, 1, 1)
    dx, dy = vx[..., 1:, None, None] - ax, vy[..., 1:, None, None] - ay
    ux, uy = gx.view(1, 1, 1, 1, w) - ax, gy.view(1, 1, 1, h, 1) - ay
    length2 = dx.square() + dy.square()
    # |u - t d|^2 = |u|^2 + t (t |d|^2 - 2 u.d), expanded so that only ~8 passes touch the
    # (B, S, K, h, w) volume and |u|^2 is never materialised.
    ud = ux * dx + uy * dy
    t = (ud / length2.clamp_min(1e-6)).clamp_(0.0, 1.0)
    dist2 = (t * length2).sub_(ud).sub_(ud).mul_(t).add_(ux.square()).add_(uy.square())
    return dist2.amin(2).clamp_min_(0.0).sqrt_() - 0.5 * brush[..., None, None]


def _draw(batch: int, height: int, width: int, coverage, generator, device) -> Tensor:
    """One attempt: (batch, 1, height, width) bool masks steered towards the coverage range."""
    lo, hi = coverage
    fields = torch.cummin(_stroke_fields(batch, height, width, generator, device), dim=1).values
    estimate = (fields <= 0).float().mean((-2, -1))  # (B, S): coverage of the first n strokes
    target = _uniform((batch, 1), lo, hi, generator, device)
    # Prefer unions inside the range (estimated), then the one closest to the target.
    score = (estimate - target).abs() + 2.0 * ((estimate < lo) | (estimate > hi))
    chosen = fields[torch.arange(batch, device=device), score.argmin(1)]
    field = F.interpolate(
        chosen[:, None], size=(height, width), mode="bilinear", align_corners=False
    )
    return field <= 0


def free_form_masks(
    batch_size: int,
    height: int,
    width: int,
    *,
    coverage: tuple[float, float] = (0.1, 0.5),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""DeepFill v2-style irregular brush-stroke hole masks.

    Args:
        batch_size: number of masks B.
        height: mask height H.
        width: mask width W.
        coverage: (lo, hi) range for each mask's hole fraction, 0 <= lo <= hi <= 1. Every mask lies in
            it unless MAX_ATTEMPTS redraws all missed (only plausible for very narrow or extreme
            ranges); such a mask is the closest of its last attempt.
        generator: random source; must live on ``device``. Same seed and device, same masks.
        device: where to build the masks (default: the generator's device, else CPU).

    Returns:
        (B, 1, H, W) float32 in {0, 1}, 1 = hole.

    >>> g = torch.Generator().manual_seed(0)
    >>> masks = free_form_masks(4, 64, 64, generator=g)
    >>> masks.shape, bool(((masks.mean((1, 2, 3)) >= 0.1) & (masks.mean((1, 2, 3)) <= 0.5)).all())
    (torch.Size([4, 1, 64, 64]), True)
    """
    if batch_size < 0 or height < 1 or width < 1:
        raise ValueError(
            f"need batch_size >= 0 and a positive size, got {batch_size}, {height}x{width}"
        )
    lo, hi = (float(c) for c in coverage)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"coverage must satisfy 0 <= lo <= hi <= 1, got {coverage}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    masks = torch.zeros(batch_size, 1, height, width, dtype=torch.bool, device=device)
    todo = torch.arange(batch_size, device=device)
    for _ in range(MAX_ATTEMPTS):
        if todo.numel() == 0:
            break
        drawn = _draw(todo.numel(), height, width, (lo, hi), generator, device)
        masks[todo] = drawn
        fraction = drawn.float().mean((1, 2, 3))
        todo = todo[(fraction < lo) | (fraction > hi)]
    return masks.float()


def edge_dropout(
    edges: Tensor, p: float = 0.08, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Drop each edge pixel independently with probability ``p`` (PI-REC's edge-domain noise).

    Args:
        edges: (B, 1, H, W) in {0, 1} (any shape and float dtype works).
        p: drop probability in [0, 1].
        generator: random source on ``edges``' device.

    Returns:
        tensor like ``edges`` with about a fraction ``p`` of its ones set to 0.

    >>> g = torch.Generator().manual_seed(0)
    >>> kept = edge_dropout(torch.ones(1, 1, 100, 100), 0.08, generator=g).mean().item()
    >>> 0.9 < kept < 0.94
    True
    """
    if not isinstance(edges, Tensor) or not edges.is_floating_point():
        raise TypeError("edges must be a float tensor")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if p == 0.0:
        return edges
    keep = torch.rand(edges.shape, generator=generator, device=edges.device) >= p
    return edges * keep


class FreeFormMask(nn.Module):
    r"""Module form of :func:`free_form_masks`: one mask per image of the input batch.

    Args:
        coverage: (lo, hi) hole fraction range per mask.

    Shape:
        - images: (B, C, H, W) (only the shape and device are used)
        - output: (B, 1, H, W) float32 in {0, 1}, 1 = hole

    >>> FreeFormMask()(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(self, coverage: tuple[float, float] = (0.1, 0.5)) -> None:
        super().__init__()
        self.coverage = coverage

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        batch, _, height, width = images.shape
        return free_form_masks(
            batch, height, width, coverage=self.coverage, generator=generator, device=images.device
        )


class EdgeDropout(nn.Module):
    r"""Module form of :func:`edge_dropout`.

    Args:
        p: drop probability per edge pixel.

    Shape:
        - edges: (B, 1, H, W) in {0, 1}
        - output: same shape

    >>> EdgeDropout(0.5)(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 1, 4, 4])
    """

    def __init__(self, p: float = 0.08) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, edges: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return edge_dropout(edges, self.p, generator=generator)
