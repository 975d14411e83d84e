"""data.cache: ram and device give the same batches as decoding every batch from the files."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.data.cache import check_cache_mode


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twelve small real PNG/JPEG files of different sizes and modes."""
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    for i in range(8):
        side = 40 + 4 * i
        pixels = (torch.rand(side, side + 8, 3, generator=g) * 255).to(torch.uint8).numpy()
        image = Image.fromarray(pixels)
        if i % 3 == 0:
            image.convert("RGBA").save(root / f"{i:02d}.png")
        else:
            image.save(root / f"{i:02d}.{'jpg' if i % 3 == 1 else 'png'}")
    return root


def _batches(folder, cache: str, stage: str) -> list[dict]:
    torch.manual_seed(0)  # the loader's shuffle draws from the global state
    dm = PIRECDataModule(
        root=folder,
        image_size=32,
        batch_size=3,
        num_workers=0,
        cache=cache,
        augment=None,
        split=(0.5, 0.5, 0.0),
    )
    dm.setup("fit")
    loader = dm.train_dataloader() if stage == "fit" else dm.val_dataloader()
    return [dm.make_inputs(batch, stage) for batch in loader]


@pytest.mark.parametrize("cache", ["ram", "device"])
@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_cached_batches_equal_decoded_batches(folder, cache, stage):
    reference = _batches(folder, "none", stage)
    cached = _batches(folder, cache, stage)
    assert len(cached) == len(reference) > 0
    for ours, theirs in zip(cached, reference):
        assert torch.equal(ours["index"], theirs["index"])
        for key in ("image", "edge", "mask", "color_domain"):
            assert ours[key].dtype == theirs[key].dtype
            assert torch.equal(ours[key], theirs[key]), key


def test_device_cache_sends_indices_only(folder):
    dm = PIRECDataModule(
        root=folder, image_size=32, batch_size=3, num_workers=0, cache="device", split=(0.5, 0.5, 0)
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"index"}
    assert dm.make_inputs(batch, "fit")["image"].shape == (3, 3, 32, 32)


def test_unknown_cache_mode_names_the_choices():
    with pytest.raises(ValueError, match="data.cache must be one of none, ram, device"):
        check_cache_mode("gpu")


def test_cache_mode_is_checked_before_training(make_cfg):
    from pirec_lightning.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="data.cache"):
        validate_config(make_cfg("data.cache=disk"))
