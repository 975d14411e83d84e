"""Datasets (a folder of images, the embedded emoji) and the LightningDataModule."""

from pirec_lightning.data.datamodule import PIRECDataModule
from pirec_lightning.data.emoji import EmojiDataset, emoji_files
from pirec_lightning.data.folder import (
    IMAGE_EXTENSIONS,
    FolderImageDataset,
    find_images,
    load_image,
)
from pirec_lightning.data.split import emoji_group_key, split_files

__all__ = [
    "IMAGE_EXTENSIONS",
    "EmojiDataset",
    "FolderImageDataset",
    "PIRECDataModule",
    "emoji_files",
    "emoji_group_key",
    "find_images",
    "load_image",
    "split_files",
]
