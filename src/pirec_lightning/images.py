"""Decoding one image file safely, for training data, inference inputs and the app alike: a pixel
limit before decoding, JPEG draft mode, EXIF orientation, ICC-aware CMYK, any mode to RGB with
transparency composited onto white.

>>> image = decode_image("photo.jpg", image_size=256)  # doctest: +SKIP
>>> image.mode in ("RGB", "RGBA", "L", "P", "I;16")  # doctest: +SKIP
True
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pirec_lightning.errors import ImageTooLarge

__all__ = [
    "DECODE_ERRORS",
    "DEFAULT_MAX_PIXELS",
    "ImageTooLarge",
    "decode_image",
    "open_image",
    "reduce_image",
    "to_rgb_on_white",
    "to_srgb",
]

#: what a decoder raises for a bad file; MemoryError and programming errors are not in it
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes PIL.UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # some Pillow plugins report broken headers this way
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

_WHITE = (255, 255, 255)

#: default of ``data.max_pixels``: a 10000 x 10000 image (300 MB decoded as RGB)
DEFAULT_MAX_PIXELS = 100_000_000


def _srgb_profile():  # built once per process; ImageCms needs LittleCMS, which wheels ship
    from PIL import ImageCms

    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


_SRGB = None


def _description(profile) -> str:
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(profile)
    except ImageCms.PyCMSError:  # a profile without a description tag
        return ""


def to_srgb(image: Image.Image) -> Image.Image:
    """CMYK, and RGB with an embedded non-sRGB ICC profile, converted to sRGB through that
    profile; without a usable profile CMYK gets Pillow's plain conversion. Other images are
    returned unchanged.

    Args:
        image: a decoded Pillow image.

    Returns:
        An ``RGB`` image for CMYK input, else ``image`` (possibly colour-converted).
    """
    icc = image.info.get("icc_profile")
    if image.mode not in ("CMYK", "RGB") or not icc:
        return image.convert("RGB") if image.mode == "CMYK" else image
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if image.mode == "RGB" and "srgb" in _description(source).lower():
            return image
        return ImageCms.profileToProfile(image, source, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        # a broken or mismatched embedded profile: the pixels are still usable as they are
        return image.convert("RGB") if image.mode == "CMYK" else image


def decode_image(
    path: str | Path, image_size: int | None, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode ``path`` fully, upright and in sRGB where it was CMYK or ICC-tagged RGB.

    The pixel count is checked from the header before any pixel is decoded. JPEGs at least
    twice ``image_size`` on both sides decode in draft mode (libjpeg's DCT scaling), never below
    ``image_size`` on the shorter side, which is much faster and lighter for large photos.

    Args:
        path: an image file.
        image_size: the side the caller will resize to (bounds the draft scale); None decodes
            at full size.
        max_pixels: refuse images with more pixels (None: no limit of ours; Pillow's own
            decompression-bomb limit still applies).

    Returns:
        The decoded image, any mode except CMYK; the file is closed.

    Raises:
        ImageTooLarge: over ``max_pixels``.
        OSError, SyntaxError, ValueError, ...: Pillow's errors for a bad file.
    """
    with warnings.catch_warnings():
        # our own limit decides; Pillow's warning would fire for every large photo
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            opened = Image.open(path)
        except Image.DecompressionBombError as error:  # Pillow's own, larger limit
            raise ImageTooLarge(f"over Pillow's decompression-bomb limit: {error}") from error
        with opened:
            pixels = opened.width * opened.height
            if max_pixels is not None and pixels > max_pixels:
                raise ImageTooLarge(
                    f"{opened.width}x{opened.height} = {pixels:,} pixels is over "
                    f"data.max_pixels={max_pixels:,}"
                )
            if image_size and opened.format == "JPEG" and min(opened.size) >= 2 * image_size:
                opened.draft(opened.mode, (image_size, image_size))
            opened.load()  # decode fully here so truncation errors surface inside this call
            image = ImageOps.exif_transpose(opened)
            if image is opened:  # no orientation tag: detach from the file before closing
                image = opened.copy()
    return to_srgb(image)


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float greyscale image to mode ``L``.

    Pillow's own ``I``/``F`` -> ``L`` conversion clips instead of scaling, which turns most
    16-bit images white.
    """
    array = np.asarray(image)
    if image.mode == "F":
        top = 1.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 255.0
    elif image.mode.startswith("I;16"):
        top = 65535.0
    else:  # mode "I": 32-bit ints; 16-bit PNGs decode to it on older Pillow
        top = 65535.0 if int(array.max(initial=0)) > 255 else 255.0
    scaled = np.clip(np.nan_to_num(array.astype(np.float64) / top), 0.0, 1.0)
    return Image.fromarray(np.round(scaled * 255.0).astype(np.uint8), mode="L")


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``RGB``, compositing transparency onto white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _wide_to_8bit(image).convert("RGB")
    has_alpha = "A" in image.getbands() or "a" in image.getbands()
    if has_alpha or "transparency" in image.info:
        # Straight alpha over an opaque white canvas, before resizing, so edges do not fringe dark.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> Image.Image:
    """:func:`decode_image` for a file a user names, with one-line errors: at full size, or with
    ``max_side`` reduced so its longer side is at most ``max_side`` pixels (a large JPEG decodes
    in draft mode, at a fraction of its size; other formats are box-reduced by an integer factor
    right after decoding, then resized with Lanczos), keeping its aspect ratio.

    Raises:
        FileNotFoundError: no such file (or a folder).
        ValueError: undecodable, truncated, or over ``max_pixels`` (names the file).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"image file {what}: {path}")
    try:  # upright, sRGB, refused over the pixel limit; a bad file is one line, not a traceback
        image = decode_image(path, max_side, max_pixels)
        return image if max_side is None else reduce_image(image, max_side)
    except DECODE_ERRORS as error:
        raise ValueError(f"cannot decode image {path}: {type(error).__name__}: {error}") from None


def reduce_image(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` with its longer side at most ``max_side`` (aspect ratio kept): a box reduction
    by the largest integer factor that stays at or above ``max_side`` (fast, and antialiased),
    then Lanczos to the exact size. Images already small enough are returned as they are; modes
    other than RGB and L become RGB on white first."""
    if max(image.size) <= max_side:
        return image
    if image.mode not in ("RGB", "L"):  # transparency composited before averaging pixels
        image = to_rgb_on_white(image)
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    factor = max(image.size) // max_side
    if factor >= 2:
        image = image.reduce(factor)
    return image.resize(size, Image.Resampling.LANCZOS) if image.size != size else image
