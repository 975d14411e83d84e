"""Training augmentation on the batch's device with ``kornia.augmentation`` (``data.augment``).

PI-REC's training code flips images left-right; that is the one augmentation on by default
(p = 0.5). The others are available by config and off (p = 0). The DataModule applies them in
``on_after_batch_transfer`` in training only, before edges, masks and color domain are made, so
every input is made from the augmented image and the target is the augmented image too.
Kornia draws from torch's global random state (seeded by ``seed``).

Config (every key optional; ``p`` is the probability per sample)::

    augment:
      enabled: true
      horizontal_flip: {p: 0.5}
      vertical_flip: {p: 0.0}
      rotation: {p: 0.0, degrees: 15.0}          # border pixels repeated, no black corners
      resized_crop: {p: 0.0, scale: [0.7, 1.0]}  # a crop of that area fraction, resized back
      color_jitter: {p: 0.0, brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.02}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kornia.augmentation as K
import torch
from torch import Tensor, nn

__all__ = ["AUGMENTATIONS", "build_augmentation"]


def _rotation(p: float, degrees: float = 15.0) -> nn.Module:
    return K.RandomAffine(degrees=float(degrees), padding_mode="border", p=p)


def _resized_crop(p: float, scale: tuple[float, float] = (0.7, 1.0)) -> nn.Module:
    return _ResizedCrop(tuple(float(s) for s in scale), p)


def _color_jitter(
    p: float,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    hue: float = 0.02,
) -> nn.Module:
    return K.ColorJitter(brightness, contrast, saturation, hue, p=p)


#: name -> builder taking ``p`` and the entry's other keys
AUGMENTATIONS: dict[str, Callable[..., nn.Module]] = {
    "horizontal_flip": lambda p: K.RandomHorizontalFlip(p=p),
    "vertical_flip": lambda p: K.RandomVerticalFlip(p=p),
    "rotation": _rotation,
    "resized_crop": _resized_crop,
    "color_jitter": _color_jitter,
}


class _ResizedCrop(nn.Module):
    """``K.RandomResizedCrop`` back to the batch's own size, built on first use."""

    def __init__(self, scale: tuple[float, float], p: float) -> None:
        super().__init__()
        self.scale, self.p = scale, p
        self.crops: dict[tuple[int, int], nn.Module] = {}

    def forward(self, images: Tensor) -> Tensor:
        size = (images.shape[-2], images.shape[-1])
        if size not in self.crops:
            self.crops[size] = K.RandomResizedCrop(size, scale=self.scale, p=self.p)
        return self.crops[size](images)


class Augmentation(nn.Module):
    """The enabled augmentations in order; (B, 3, H, W) in [0, 1] -> same shape, in [0, 1]."""

    def __init__(self, transforms: list[nn.Module]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1], or (B, 3 + C, H, W): the extra channels (an item's line art)
        move with the picture through the geometric transforms and skip the colour ones."""
        for transform in self.transforms:
            if images.shape[1] > 3 and isinstance(transform, K.ColorJitter):
                images = torch.cat([transform(images[:, :3]), images[:, 3:]], dim=1)
            else:
                images = transform(images)
        if images.shape[1] == 3:
            return images.clamp(0, 1)
        return torch.cat([images[:, :3].clamp(0, 1), images[:, 3:]], dim=1)


def build_augmentation(config: Mapping[str, Any] | None) -> Augmentation | None:
    """The augmentation ``config`` asks for, or ``None`` when nothing has ``p > 0``.

    >>> build_augmentation({"horizontal_flip": {"p": 0.5}})
    Augmentation(
      (transforms): ModuleList(
        (0): RandomHorizontalFlip(p=0.5, p_batch=1.0, same_on_batch=False)
      )
    )
    >>> build_augmentation({"enabled": False, "horizontal_flip": {"p": 0.5}}) is None
    True
    """
    config = dict(config or {})
    if not config.pop("enabled", True):
        return None
    unknown = sorted(set(config) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(
            f"unknown data.augment entries {unknown}; valid: {', '.join(AUGMENTATIONS)}"
        )
    transforms = []
    for name, options in config.items():
        options = dict(options or {})
        p = float(options.pop("p", 0.0))
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"data.augment.{name}.p must be in [0, 1], got {p}")
        if p > 0:
            try:
                transforms.append(AUGMENTATIONS[name](p, **options))
            except TypeError as error:
                raise ValueError(f"data.augment.{name}: {error}") from error
    return Augmentation(transforms) if transforms else None
