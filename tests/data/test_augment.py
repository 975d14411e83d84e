"""data.augment: Kornia augmentations in training only, before the inputs are made."""

from __future__ import annotations

import pytest
import torch

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.data.augment import AUGMENTATIONS, build_augmentation


def test_default_config_flips_half_the_training_images(make_cfg):
    from hydra.utils import instantiate

    dm = instantiate(make_cfg().data, _convert_="all")
    assert [type(t).__name__ for t in dm.augmentation.transforms] == ["RandomHorizontalFlip"]
    images = torch.rand(400, 3, 16, 16)
    torch.manual_seed(0)
    out = dm.augmentation(images)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert bool((flipped | kept).all())
    assert 0.4 < flipped.float().mean() < 0.6


def test_flip_applies_in_training_only_and_before_the_inputs():
    dm = PIRECDataModule(
        image_size=32, batch_size=4, num_workers=0, limit=8, augment={"horizontal_flip": {"p": 1}}
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    made = dm.make_inputs(dict(batch), "fit")
    assert torch.equal(made["image"], batch["image"].flip(-1))
    # edges are made from the flipped image: the validation edges of the flipped image match
    reference = dm.make_inputs({**batch, "image": batch["image"].flip(-1)}, "validate")
    assert torch.equal(dm.make_inputs(dict(batch), "validate")["image"], batch["image"])
    flipped_edges = dm.preprocessor(made["image"], "validate", ("edge",))["edge"]
    assert torch.equal(flipped_edges, reference["edge"])


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_runs_and_keeps_shape_and_range(name):
    augmentation = build_augmentation({"enabled": True, name: {"p": 1.0}})
    images = torch.rand(2, 3, 32, 32)
    out = augmentation(images)
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)


def test_nothing_enabled_builds_nothing():
    assert build_augmentation(None) is None
    assert build_augmentation({"horizontal_flip": {"p": 0.0}}) is None
    assert build_augmentation({"enabled": False, "vertical_flip": {"p": 1.0}}) is None


def test_bad_entries_name_the_key():
    with pytest.raises(ValueError, match=r"unknown data.augment entries \['blur'\]"):
        build_augmentation({"blur": {"p": 0.5}})
    with pytest.raises(ValueError, match=r"data.augment.rotation.p must be in \[0, 1\]"):
        build_augmentation({"rotation": {"p": 2}})


def test_extra_channel_moves_with_the_picture_and_skips_colour():
    """data=avatars: the line art (4th channel, -1 where an item has none) follows every
    geometric transform of its picture, is left out of the colour ones and is not clamped."""
    torch.manual_seed(0)
    augmentation = build_augmentation(
        {"horizontal_flip": {"p": 1.0}, "color_jitter": {"p": 1.0, "brightness": 0.5}}
    )
    picture = torch.rand(2, 3, 16, 16)
    art = torch.zeros(2, 1, 16, 16)
    art[0, :, :, 2] = 1  # a vertical line near the left
    art[1] = -1
    out = augmentation(torch.cat([picture, art], dim=1))
    assert out.shape == (2, 4, 16, 16)
    assert torch.equal(out[0, 3], art[0, 0].flip(-1))  # on the right after the flip
    assert torch.equal(out[1, 3], art[1, 0])  # "no line art" survives
    assert out[:, :3].min() >= 0 and out[:, :3].max() <= 1
