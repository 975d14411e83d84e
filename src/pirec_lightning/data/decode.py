"""Decoding one image file safely: a pixel limit before decoding, JPEG draft mode, EXIF
orientation, ICC-aware CMYK.

>>> image = decode_image("photo.jpg", image_size=256)  # doctest: +SKIP
>>> image.mode in ("RGB", "RGBA", "L", "P", "I;16")  # doctest: +SKIP
True
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps

__all__ = ["DEFAULT_MAX_PIXELS", "ImageTooLarge", "decode_image", "to_srgb"]

#: default of ``data.max_pixels``: a 10000 x 10000 image (300 MB decoded as RGB)
DEFAULT_MAX_PIXELS = 100_000_000


class ImageTooLarge(ValueError):
    """An image with more pixels than the limit, refused before decoding (a decompression
    bomb, or a photo far larger than training needs)."""


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
