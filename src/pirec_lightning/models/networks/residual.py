"""A second stage that paints a correction of its input instead of a new image."""

from __future__ import annotations

from torch import Tensor, nn


def add_correction(image: Tensor, correction: Tensor) -> Tensor:
    """``clamp(image + 2 * correction - 1, 0, 1)``: a generator output in [0, 1] read as a
    correction in [-1, 1] of ``image``; 0.5 everywhere leaves ``image`` unchanged.

    Args:
        image: (B, 3, H, W) in [0, 1], the first stage's image.
        correction: (B, 3, H, W) in [0, 1], the second stage's generator output.

    Returns:
        (B, 3, H, W) in [0, 1].

    >>> add_correction(torch.tensor([0.25]), torch.tensor([0.5])).item()
    0.25
    """
    return (image + 2 * correction - 1).clamp(0, 1)


class ResidualRefiner(nn.Module):
    """Wraps a generator so that ``forward(cat([image, edge]))`` returns
    :func:`add_correction` ``(image, generator(...))``: the inference form of a refinement phase
    trained with ``residual=True``.

    Shape:
        ``(B, 4, H, W)`` (RGB first, then the edge) -> ``(B, 3, H, W)`` in [0, 1].
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return add_correction(x[:, :3], self.generator(x))
