"""The sketch app's canvases as PI-REC inputs, and PI-REC's example pairs; free of Gradio.

The edge canvas is drawn as PI-REC's edge files are stored (white lines on black) and the color
domain canvas starts white. A canvas value is what an image editor hands over: a mapping with
``background``, ``layers`` and ``composite`` images (PIL, numpy or file paths), or one image.
These functions only flatten and size the canvases; :class:`~pirec_lightning.inference.Reconstructor`
does the reading (edge polarity, binarization) and the reconstruction.

>>> value = {"background": blank_canvas(8, EDGE_BACKGROUND), "layers": [], "composite": None}
>>> flatten_canvas(value, EDGE_BACKGROUND, 16).shape
(16, 16, 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from pirec_lightning.pairs import Pair

__all__ = [
    "COLOR_BACKGROUND",
    "EDGE_BACKGROUND",
    "blank_canvas",
    "canvas_value",
    "default_example_roots",
    "find_examples",
    "flatten_canvas",
    "to_canvas_image",
]

#: the edge canvas: white lines on black, as PI-REC's ``*_e.png`` files
EDGE_BACKGROUND = (0, 0, 0)
#: the color domain canvas starts white (unpainted areas read as white)
COLOR_BACKGROUND = (255, 255, 255)


def _as_pil(image: Any) -> Image.Image | None:
    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    if isinstance(image, str | os.PathLike):
        with Image.open(image) as opened:
            opened.load()
            return opened.copy()
    if isinstance(image, Mapping) and "path" in image:  # a Gradio FileData dict
        return _as_pil(image["path"])
    raise TypeError(f"a canvas image must be a PIL image, an array or a path, got {type(image)}")


def blank_canvas(size: int, color: tuple[int, int, int]) -> np.ndarray:
    """An empty canvas: (size, size, 3) uint8 filled with ``color``."""
    return np.full((size, size, 3), color, dtype=np.uint8)


def flatten_canvas(value: Any, background: tuple[int, int, int], size: int) -> np.ndarray:
    """One canvas value as an opaque (size, size, 3) uint8 RGB image.

    Args:
        value: an editor mapping (``composite`` when present, else ``background`` with
            ``layers`` drawn over it), or a single image (PIL, numpy, path).
        background: RGB shown where the canvas is transparent (unpainted or erased).
        size: the model's image size; a canvas of another size is resized to it (box filter,
            so a thin line stays visible when shrunk).

    Raises:
        ValueError: the canvas is empty (no value at all).
    """
    images: list[Image.Image | None]
    if isinstance(value, Mapping) and "path" not in value:
        composite = _as_pil(value.get("composite"))
        if composite is not None:
            images = [composite]
        else:
            images = [_as_pil(value.get("background"))]
            images += [_as_pil(layer) for layer in value.get("layers") or []]
    else:
        images = [_as_pil(value)]
    images = [image for image in images if image is not None]
    if not images:
        raise ValueError("the canvas is empty: draw on it, load a photo or pick an example")
    canvas = Image.new("RGBA", images[0].size, (*background, 255))
    for image in images:
        layer = image.convert("RGBA")
        if layer.size != canvas.size:
            layer = layer.resize(canvas.size, Image.Resampling.BOX)
        canvas = Image.alpha_composite(canvas, layer)
    flat = canvas.convert("RGB")
    if flat.size != (size, size):
        flat = flat.resize((size, size), Image.Resampling.BOX)
    return np.asarray(flat).copy()


def to_canvas_image(image: torch.Tensor) -> np.ndarray:
    """A model-side map as a canvas image: (1, H, W) edges in {0, 1} become white lines on
    black, (3, H, W) colors in [0, 1] stay RGB. Returns (H, W, 3) uint8."""
    if image.ndim == 4:
        image = image[0]
    array = image.detach().float().cpu().clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0)
    return (array.numpy() * 255).round().astype(np.uint8)


def canvas_value(background: np.ndarray) -> dict[str, Any]:
    """An editor value holding ``background`` and no strokes."""
    return {"background": background, "layers": [], "composite": background}


def find_examples(roots: Iterable[str | Path]) -> list[Pair]:
    """PI-REC's example pairs ``(name, edge file, color file)`` in the first of ``roots`` that
    holds any (:func:`~pirec_lightning.pairs.find_pairs` naming); empty when none does."""
    from pirec_lightning.pairs import find_pairs

    for root in roots:
        try:
            return find_pairs(root)
        except (FileNotFoundError, ValueError):
            continue
    return []


def default_example_roots() -> list[Path]:
    """Where the app looks for PI-REC's examples: ``$PIREC_EXAMPLES_DIR``, then
    ``../shared/data/pirec_examples`` beside the working directory and beside a source checkout."""
    roots: Iterable[Path | None] = (
        Path(os.environ["PIREC_EXAMPLES_DIR"]) if os.environ.get("PIREC_EXAMPLES_DIR") else None,
        Path.cwd().parent / "shared" / "data" / "pirec_examples",
        Path(__file__).resolve().parents[3] / "shared" / "data" / "pirec_examples",
    )
    unique: list[Path] = []
    for root in roots:
        if root is not None and root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique
