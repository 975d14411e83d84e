"""One SVG drawing -> a cached picture and its line art, shared by the avatars and the icons.

A pair is two PNGs in a folder: ``<stem>.png`` (the picture, RGBA on a transparent background,
as resvg draws it) and ``<stem>.line.png`` (the line art, 1-bit, white = ink), each written to a
temporary file and renamed, line art first, so a picture on disk means a complete pair and
parallel workers or processes can fill one cache together.

An item is read back as a dict ``{"image": (3, S, S) float32 in [0, 1] on white, "line_art":
(1, S, S) float32 in {0, 1} (zeros without line art), "has_line_art": bool tensor ()}``, as the
image tensor alone, or packed as one ``(4, S, S)`` tensor whose fourth channel is the line art
(all -1 for a drawing without), which the data module caches, batches and augments as it does
pictures.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pirec_lightning.data import lineart
from pirec_lightning.data.folder import load_image

__all__ = ["load_pair", "render_pair", "write_atomic"]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def render_pair(
    svg: Callable[[], str],
    picture: Path,
    line: Path | None,
    size: int,
    rules: lineart.LineArtRules | None = None,
    write: Callable[[Path, bytes], None] = write_atomic,
) -> tuple[Path, Path | None]:
    """Render the picture (and the line art, unless ``line`` is None) if not cached yet.

    Args:
        svg: makes the SVG document (only called when something is missing).
        picture, line: the PNG paths.
        size: side in pixels.
        rules: the set's line-art rules.
        write: the atomic writer (the avatars pass theirs).
    """
    if picture.is_file() and (line is None or line.is_file()):
        return picture, line
    picture.parent.mkdir(parents=True, exist_ok=True)
    document = svg()
    if line is not None:  # first, so that a picture on disk means a complete pair
        buffer = io.BytesIO()
        Image.fromarray(lineart.line_art(document, size, rules)).save(buffer, format="PNG")
        write(line, buffer.getvalue())
    write(picture, lineart.render_png(document, size))
    return picture, line


def _ink(line: Path) -> torch.Tensor:
    with Image.open(line) as file:
        return torch.from_numpy(np.asarray(file.convert("L")) > 127)[None].float()


def load_pair(
    picture: Path, line: Path | None, size: int, packed: bool = False, with_line_art: bool = True
) -> Any:
    """Read a pair as an item (the formats are in the module docstring)."""
    image = load_image(picture, size)
    if packed:
        if line is None:
            return torch.cat([image, torch.full_like(image[:1], -1.0)])
        return torch.cat([image, _ink(line)])
    if not with_line_art:
        return image
    ink = torch.zeros(1, size, size) if line is None else _ink(line)
    return {"image": image, "line_art": ink, "has_line_art": torch.tensor(line is not None)}
