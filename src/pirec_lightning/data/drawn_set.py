"""A synthetic "drawn lines" evaluation set, made from any images.

People draw one line per outline, with a brush a few pixels wide, tracing the picture: its dark
strokes and the outlines of its colour regions; Canny gives 1-pixel lines on both sides of every
dark stroke and on every colour boundary. :func:`drawn_set_inputs` turns images into what a
person's sketch would give the model: the :func:`~pirec_lightning.preprocess.drawn.drawn_lines`
of the image (its dark contours plus the boundaries of its own colour regions,
:func:`~pirec_lightning.preprocess.drawn.picture_regions`, in 3-pixel strokes by default) and the
colour domain at the validation settings. The lines trace the picture, not the colour domain: a
person draws what they see, and the colour domain's wide medians move and merge its boundaries. :func:`write_drawn_set` stores a set as PI-REC's file pairs
(``N_e.png`` white lines on black, ``N_c.png`` colour domain) next to the ground truth ``N.png``,
the layout ``pirec reconstruct`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import save_image

from pirec_lightning.preprocess.confusion import ConfusionConfig, Preprocessor
from pirec_lightning.preprocess.drawn import drawn_lines, picture_regions, prepare_edges

__all__ = ["drawn_edges_for", "drawn_set_inputs", "write_drawn_set"]


@torch.no_grad()
def drawn_set_inputs(
    images: Tensor,
    *,
    stroke_radius: int = 1,
    threshold: float = 0.25,
    confusion: ConfusionConfig | Mapping | None = None,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Drawn-line edge maps and colour domains for ``images``.

    Args:
        images: (B, 3, S, S) in [0, 1].
        stroke_radius: brush radius in pixels (strokes are ``2 r + 1`` wide).
        threshold: grey level below which a pixel is ink.
        confusion: the colour domain's settings (its ``val_*`` values are used).
        seed: seed of the K-means draws (colour domain and the picture's regions).

    Returns:
        ``image`` (the input), ``edge`` (B, 1, S, S) in {0, 1} and ``color_domain``
        (B, 3, S, S) in [0, 1].

    >>> out = drawn_set_inputs(torch.rand(2, 3, 32, 32))
    >>> out["edge"].shape, sorted(out)
    (torch.Size([2, 1, 32, 32]), ['color_domain', 'edge', 'image'])
    """
    size = min(images.shape[-2:])
    preprocessor = Preprocessor(size, confusion, enabled=False, seed=seed)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    made = preprocessor(images, "test", ("color_domain",), generator=generator)
    edge = _traced(images, stroke_radius, threshold, generator)
    return {"image": images, "edge": edge, "color_domain": made["color_domain"]}


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


def write_drawn_set(
    images: Tensor, folder: str | Path, batch_size: int = 64, **options: object
) -> list[Path]:
    """Write ``N.png`` (ground truth), ``N_e.png`` (drawn lines, white on black) and
    ``N_c.png`` (colour domain) for each image; ``options`` go to :func:`drawn_set_inputs`.

    Returns:
        The edge files written, in image order.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(images), batch_size):
        batch = drawn_set_inputs(images[start : start + batch_size], **options)  # type: ignore[arg-type]
        for offset in range(len(batch["image"])):
            n = start + offset
            save_image(batch["image"][offset], folder / f"{n}.png")
            save_image(batch["edge"][offset], folder / f"{n}_e.png")
            save_image(batch["color_domain"][offset], folder / f"{n}_c.png")
            written.append(folder / f"{n}_e.png")
    return written
