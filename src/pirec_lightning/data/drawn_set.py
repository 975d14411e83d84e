"""Synthetic "drawn lines" for evaluation, made from any images.

People draw one line per outline, with a brush a few pixels wide, tracing the picture: its dark
strokes and the outlines of its colour regions; Canny gives 1-pixel lines on both sides of every
dark stroke and on every colour boundary. :func:`drawn_edges_for` turns images into what a
person's sketch would give the model: the :func:`~pirec_lightning.preprocess.drawn.drawn_lines`
of the image (its dark contours plus the boundaries of its own colour regions,
:func:`~pirec_lightning.preprocess.drawn.picture_regions`, in 3-pixel strokes). The lines trace
the picture, not the colour domain: a person draws what they see, and the colour domain's wide
medians move and merge its boundaries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pirec_lightning.preprocess.drawn import drawn_lines, picture_regions, prepare_edges

__all__ = ["drawn_edges_for"]


def _traced(
    images: Tensor, stroke_radius: int, threshold: float, generator: torch.Generator
) -> Tensor:
    regions = picture_regions(images, generator=generator)
    return drawn_lines(images, stroke_radius=stroke_radius, threshold=threshold, regions=regions)


def drawn_edges_for(images: Tensor, edge_style: str = "drawn", seed: int = 0) -> Tensor:
    """The synthetic drawn-lines edge map of ``images`` (3-pixel strokes along their dark
    contours and the outlines of their colour regions) as the model gets it with ``edge_style``.

    Args:
        images: (B, 3, S, S) in [0, 1].
        edge_style: ``drawn`` thins the strokes to 1 pixel; ``canny`` leaves them as drawn.
        seed: seed of the K-means draws of the picture's regions.

    Returns:
        (B, 1, S, S) in {0, 1}.
    """
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return prepare_edges(_traced(images, 1, 0.25, generator), edge_style)
