"""What users hand to inference (tensors, numpy arrays, PIL images, file paths) as batched tensors,
and the reconstructions back as what they ask for.

Edge files are read as PI-REC reads them: greyscale (mode ``L``), white lines on black, a pixel is
an edge above 59. Hand-drawn line art (black lines on white) is accepted too: with
``edge_polarity="auto"`` the majority value of each image is taken as its background. Edge images
as people save them read the same way:

- lines on a transparent background (mostly transparent: RGBA, LA, a palette with transparency):
  the alpha is the lines' coverage, and the transparent background becomes the colour opposite
  to the lines' (white lines land on black, black lines on white), never plain white;
- 8-bit edge maps stored as 0 and 1 (the image's maximum is 1) are scaled to 0 and 255.

An edge map that comes out empty, or with more than 30 % of its pixels as edges (a photo or a
color domain given as the edge map), is read anyway with a one-line warning naming it.

Arrays and tensors: numpy (H, W), (H, W, C), (B, H, W) or (B, H, W, C); a 3-D array is an image
with channels when its last dim is 1, 3 or 4, otherwise a batch of B single-channel images.
Tensors (H, W), (C, H, W), (B, H, W) or (B, C, H, W); a 3-D tensor is (C, H, W) when its first
dim is 1, 3 or 4, otherwise a batch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pirec_lightning.images import open_image, to_rgb_on_white

__all__ = [
    "CROWDED_EDGES",
    "EDGE_POLARITIES",
    "EDGE_THRESHOLD",
    "OUTPUT_TYPES",
    "ImageInput",
    "binarize_edges",
    "edge_names",
    "to_edge_batch",
    "to_image_batch",
    "to_output",
    "warn_unlikely_edges",
]

#: an 8-bit edge pixel is an edge above this value (PI-REC's reading of its edge PNGs)
EDGE_THRESHOLD = 59
#: an edge map with more of its pixels as edges than this is suspect (PI-REC's: 3-8 %)
CROWDED_EDGES = 0.30
_CHANNELS = (1, 3, 4)
EDGE_POLARITIES = ("auto", "white-on-black", "black-on-white")
OUTPUT_TYPES = ("pt", "np", "pil")

ImageInput = Tensor | np.ndarray | Image.Image | str | os.PathLike | Sequence[Any]


def _lines_on_transparency(image: Image.Image) -> np.ndarray | None:
    """Grey (H, W) uint8 of an edge image drawn on a transparent background (most pixels under
    half opaque): the lines' grey weighted by their coverage (alpha), over the colour opposite
    to the lines'. None for an image that is mostly opaque (read as it is, on white)."""
    has_alpha = any(band in image.getbands() for band in ("A", "a"))
    if not (has_alpha or "transparency" in image.info):
        return None
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), np.float64) / 255
    if (alpha < 0.5).mean() <= 0.5:
        return None
    grey = np.asarray(rgba.convert("RGB").convert("L"), np.float64)
    covered = alpha >= 0.5
    line = grey[covered].mean() if covered.any() else 255.0
    background = 0.0 if line >= 128 else 255.0  # white lines go on black, dark ones on white
    return np.round(grey * alpha + background * (1 - alpha)).astype(np.uint8)


def _pil_to_array(image: Image.Image, channels: int) -> np.ndarray:
    if channels == 1:
        if image.mode in ("L", "1"):
            return np.asarray(image.convert("L"))[..., None]
        lines = _lines_on_transparency(image)
        if lines is not None:
            return lines[..., None]
        return np.asarray(to_rgb_on_white(image).convert("L"))[..., None]
    return np.asarray(to_rgb_on_white(image))


def _array_to_tensor(array: np.ndarray, channels: int) -> Tensor:
    """(H, W), (H, W, C), (B, H, W) or (B, H, W, C) numpy -> (B, C, H, W) float in [0, 1]; a
    3-D array whose last dim is not 1, 3 or 4 is a batch of single-channel images."""
    shape = array.shape
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] not in _CHANNELS):
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in _CHANNELS:
        raise ValueError(
            "numpy images must be (H, W), (H, W, C), (B, H, W) or (B, H, W, C) with C 1, 3 or "
            f"4, got {shape}"
        )
    if not array.flags.writeable:  # torch wants writable memory (e.g. np.asarray of a PIL image)
        array = array.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    return _from_tensor(tensor, channels)


def _from_tensor(tensor: Tensor, channels: int) -> Tensor:
    """(H, W), (C, H, W), (B, H, W) or (B, C, H, W); uint8 is scaled from 0-255 (edges stored as
    0/1, an image whose maximum is 1, from 0-1). -> float (B, C, H, W)."""
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        # (C, H, W), or a batch (B, H, W) of single-channel images when B is no channel count
        tensor = tensor[None] if tensor.shape[0] in _CHANNELS else tensor[:, None]
    if tensor.ndim != 4:
        raise ValueError(
            "image tensors must be (H, W), (C, H, W), (B, H, W) or (B, C, H, W), got "
            f"{tuple(tensor.shape)}"
        )
    if tensor.dtype == torch.uint8:
        top = torch.full((tensor.shape[0], 1, 1, 1), 255.0, device=tensor.device)
        if channels == 1:  # an edge map stored as 0 and 1
            top[tensor.amax((1, 2, 3)) == 1] = 1.0
        tensor = tensor.float() / top
    elif tensor.dtype == torch.bool:
        tensor = tensor.float()
    elif not tensor.is_floating_point():
        raise ValueError(f"image tensors must be float in [0, 1] or uint8, got {tensor.dtype}")
    tensor = tensor.float()
    have = tensor.shape[1]
    if have == 4:  # RGBA: drop alpha (PIL and files composite it onto white instead)
        tensor, have = tensor[:, :3], 3
    if have == channels:
        return tensor
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], device=tensor.device).view(1, 3, 1, 1)
        return (tensor * weights).sum(1, keepdim=True)
    if have == 1 and channels == 3:
        return tensor.expand(-1, 3, -1, -1)
    raise ValueError(f"expected {channels} channel(s), got {have}")


def _to_batch(value: ImageInput, channels: int) -> Tensor:
    if isinstance(value, Tensor):
        return _from_tensor(value, channels)
    if isinstance(value, np.ndarray):
        return _array_to_tensor(value, channels)
    if isinstance(value, (str, os.PathLike)):
        value = open_image(value)
    if isinstance(value, Image.Image):
        return _array_to_tensor(_pil_to_array(value, channels), channels)
    if isinstance(value, Sequence) and value:
        parts = [_to_batch(item, channels) for item in value]
        sizes = {tuple(p.shape[-2:]) for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"images of one batch must share a size, got {sorted(sizes)}")
        return torch.cat(parts)
    raise TypeError(
        "images must be a tensor, a numpy array, a PIL image, a file path or a list of them, "
        f"got {type(value).__name__}"
    )


def to_image_batch(value: ImageInput) -> Tensor:
    """Any supported input -> (B, 3, H, W) float32 in [0, 1] (grey expands to RGB; alpha is
    composited onto white for PIL images and files)."""
    return _to_batch(value, 3).clamp(0, 1)


def binarize_edges(edges: Tensor, edge_polarity: str = "auto") -> Tensor:
    """Grey edge maps (B, 1, H, W) in [0, 1] -> (B, 1, H, W) in {0, 1}, lines = 1.

    ``"white-on-black"``: a pixel is an edge above 59/255 (PI-REC's files).
    ``"black-on-white"``: the image is inverted first (hand-drawn line art).
    ``"auto"``: per image, black-on-white when most pixels are bright (the background is the
    majority).

    >>> art = torch.ones(1, 1, 8, 8); art[..., 3, :] = 0  # one black line on white
    >>> binarize_edges(art)[0, 0, :, 0].tolist()
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    if edge_polarity not in EDGE_POLARITIES:
        raise ValueError(
            f"unknown edge_polarity {edge_polarity!r}; valid: {', '.join(EDGE_POLARITIES)}"
        )
    threshold = EDGE_THRESHOLD / 255
    bright = edges > threshold
    if edge_polarity == "white-on-black":
        return bright.to(edges.dtype)
    if edge_polarity == "black-on-white":
        return (1 - edges > threshold).to(edges.dtype)
    invert = bright.flatten(1).float().mean(1) > 0.5  # (B,): the background is white
    dark_lines = 1 - edges > threshold
    return torch.where(invert.view(-1, 1, 1, 1), dark_lines, bright).to(edges.dtype)


def edge_names(value: ImageInput, count: int) -> list[str]:
    """How a warning names each of the ``count`` images of ``value``."""
    if isinstance(value, (str, os.PathLike)):
        return [str(value)] * count
    if isinstance(value, Sequence) and len(value) == count:
        return [
            str(item) if isinstance(item, (str, os.PathLike)) else f"edge image {i} of the batch"
            for i, item in enumerate(value)
        ]
    return ["the edge image"] if count == 1 else [f"edge image {i}" for i in range(count)]


def warn_unlikely_edges(edges: Tensor, names: Sequence[str]) -> None:
    """One warning per edge map (B, 1, H, W) in {0, 1} that is empty or has more than
    :data:`CROWDED_EDGES` of its pixels as edges, naming it."""
    for name, fraction in zip(names, edges.flatten(1).mean(1).tolist()):
        if fraction == 0:
            warnings.warn(
                f"edge map {name} has no edge pixels after reading (white lines on black, or "
                "black lines on white, an edge above 59/255): the model gets no lines",
                stacklevel=3,
            )
        elif fraction > CROWDED_EDGES:
            warnings.warn(
                f"edge map {name} marks {round(fraction * 100)} % of the image as edges "
                "(PI-REC's edge maps: under 10 %); is it a photo or the color domain? (edges go "
                "to --edge, color domains to --color, photos to --photo)",
                stacklevel=3,
            )


def to_edge_batch(value: ImageInput, edge_polarity: str = "auto", warn: bool = True) -> Tensor:
    """Any supported input -> (B, 1, H, W) float32 in {0, 1}: greyscale, then
    :func:`binarize_edges` (colour inputs are converted to grey first; lines on transparency and
    0/1 files as the module says). Warns, naming the file, about an empty or crowded edge map
    (``warn=False``: the caller checks the input first, then calls :func:`warn_unlikely_edges`
    with :func:`edge_names`)."""
    edges = binarize_edges(_to_batch(value, 1), edge_polarity)
    if warn:
        warn_unlikely_edges(edges, edge_names(value, edges.shape[0]))
    return edges


def to_output(images: Tensor, output_type: str = "pt") -> Tensor | np.ndarray | list[Image.Image]:
    """(B, C, H, W) in [0, 1] -> ``"pt"``: the tensor; ``"np"``: (B, H, W, C) float32 array in
    [0, 1]; ``"pil"``: a list of B RGB (or L) PIL images."""
    if output_type == "pt":
        return images
    array = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        bytes_ = np.round(array * 255).astype(np.uint8)
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in bytes_]
    raise ValueError(f"unknown output_type {output_type!r}; valid: {', '.join(OUTPUT_TYPES)}")
