"""The avatars' line art: moved to :mod:`pirec_lightning.data.lineart` (any SVG); these names
stay importable from here."""

from pirec_lightning.data.lineart import (
    COVERAGE,
    DARK_LUMA,
    LINE_HALF_WIDTH,
    OUTLINE_WIDTH,
    LineArtRules,
    line_art,
    line_art_figures,
    render_png,
    render_rgb,
)

__all__ = [
    "COVERAGE",
    "DARK_LUMA",
    "LINE_HALF_WIDTH",
    "OUTLINE_WIDTH",
    "LineArtRules",
    "line_art",
    "line_art_figures",
    "render_png",
    "render_rgb",
]
