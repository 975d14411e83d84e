"""data.preprocess_on: the inputs made ahead (a thread, a side stream) or in the workers are the
inputs the in-series hook makes, and reach the phase through a real Trainer."""

from __future__ import annotations

import threading

import pytest
import torch

from pirec_lightning.config import validate_config
from pirec_lightning.data import PIRECDataModule
from pirec_lightning.data.placement import AheadLoader, check_placement
from tests.helpers import quiet_trainer

KEYS = ("image", "index", "edge", "mask", "color_domain")


def _datamodule(placement: str, **kwargs) -> PIRECDataModule:
    options = dict(image_size=32, batch_size=4, num_workers=0, limit=16)
    options.update(kwargs)
    dm = PIRECDataModule(preprocess_on=placement, confusion={"seed": 3}, **options)
    dm.setup("fit")
    return dm


def _epoch(dm: PIRECDataModule, made_by_loader: bool) -> list[dict]:
    torch.manual_seed(0)  # the shuffle order
    batches = list(dm.train_dataloader())
    return batches if made_by_loader else [dm.make_inputs(b, "fit") for b in batches]


@pytest.mark.parametrize("cache", ["none", "device"])
def test_ahead_batches_are_the_in_series_batches(cache):
    serial = _epoch(_datamodule("device", cache=cache), made_by_loader=False)
    ahead_dm = _datamodule("ahead", cache=cache)
    assert isinstance(ahead_dm.train_dataloader(), AheadLoader)
    ahead = _epoch(ahead_dm, made_by_loader=True)
    assert len(ahead) == len(serial) == 4
    for one, two in zip(serial, ahead, strict=True):
        for key in KEYS:
            assert torch.equal(one[key], two[key]), key


def test_ahead_hook_leaves_made_batches_alone():
    dm = _datamodule("ahead")
    batch = next(iter(dm.train_dataloader()))
    assert dm.on_after_batch_transfer(batch, 0) is batch


def test_ahead_stops_its_thread_when_a_new_epoch_starts():
    dm = _datamodule("ahead")
    loader = dm.train_dataloader()
    next(iter(loader))  # abandoned mid-epoch, as max_steps does
    assert len(list(loader)) == 4  # a fresh epoch, whole
    alive = [t for t in threading.enumerate() if t.name == "pirec-inputs-ahead"]
    assert len(alive) <= 1


def test_ahead_raises_the_loaders_error_in_the_step_thread():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            if index >= 4:
                raise OSError(f"item {index} is unreadable")
            return {"image": torch.zeros(3, 8, 8), "index": index}

    loader = AheadLoader(Broken(), batch_size=4, prepare=lambda batch: batch)
    batches = iter(loader)
    next(batches)
    with pytest.raises(OSError, match="unreadable"):
        next(batches)


def test_workers_make_the_in_series_evaluation_inputs():
    serial_dm = _datamodule("device")
    serial = [serial_dm.make_inputs(b, "validate") for b in serial_dm.val_dataloader()]
    made = list(_datamodule("workers").val_dataloader())
    assert len(made) == len(serial) > 0
    for one, two in zip(serial, made, strict=True):
        for key in KEYS:
            assert torch.equal(one[key], two[key]), key


def test_workers_draw_training_inputs_in_each_worker():
    dm = _datamodule("workers", num_workers=2)
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    for batch in batches:
        assert batch["edge"].shape == (4, 1, 32, 32)
        assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    masks = [b["mask"] for b in batches]
    assert not torch.equal(masks[0], masks[1]), "the two workers draw from different seeds"


@pytest.mark.parametrize("placement", ["ahead", "workers"])
def test_a_phase_trains_on_inputs_made_elsewhere(placement, tmp_path):
    from pirec_lightning.phases import GeneratingPhase
    from tests.phases.conftest import TINY_LOSS, TINY_MODEL

    seen: list[tuple[str, ...]] = []

    class Spy(GeneratingPhase):
        def training_step(self, batch, batch_idx):
            seen.append(tuple(sorted(batch)))
            return super().training_step(batch, batch_idx)

    dm = _datamodule(placement, limit=8)
    trainer = quiet_trainer(max_steps=4, limit_val_batches=1, default_root_dir=tmp_path)
    trainer.fit(Spy(model=TINY_MODEL, loss=TINY_LOSS), datamodule=dm)
    # the generating phase asks for edge and color domain only, wherever they are made
    assert seen and all(keys == ("color_domain", "edge", "image", "index") for keys in seen)
    assert trainer.global_step >= 2
    # the input thread stopped with the training, Lightning's copies of the loader included
    from pirec_lightning.data import placement as module

    owned = [loader for loader in module._LOADERS if loader.owner is dm]
    assert (placement == "ahead") == bool(owned)
    assert all(loader._current is None for loader in owned)


def test_placement_settings_name_the_fix(make_cfg):
    with pytest.raises(ValueError, match="data.preprocess_on must be one of device, ahead"):
        check_placement("gpu")
    with pytest.raises(ValueError, match="use data.cache=ram"):
        check_placement("workers", "device")
    cfg = make_cfg("debug=tiny", "data.preprocess_on=workers", "data.cache=device")
    with pytest.raises(ValueError, match="data.preprocess_on=workers"):
        validate_config(cfg)
    validate_config(make_cfg("debug=tiny", "data.preprocess_on=ahead"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the side stream)")
def test_ahead_on_a_side_stream_matches_in_series_on_cuda():
    from pirec_lightning.data.placement import _Ahead

    dm = _datamodule("device", cache="device")
    device = torch.device("cuda")
    torch.manual_seed(0)
    raw = list(dm.train_dataloader())
    serial = [dm.make_inputs({k: v.to(device) for k, v in b.items()}, "fit") for b in raw]
    dm = _datamodule("device", cache="device")
    side = torch.cuda.Stream(device)
    ahead = list(_Ahead(iter(raw), lambda b: dm.make_inputs(b, "fit"), device, stream=side))
    for one, two in zip(serial, ahead, strict=True):
        for key in KEYS:
            assert two[key].device.type == "cuda"
            assert torch.equal(one[key], two[key]), key


def test_ahead_loader_survives_lightnings_distributed_sampler_swap():
    """Under DDP Lightning re-creates the loader with a DistributedSampler from its arguments."""
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    dm = _datamodule("ahead")
    loader = dm.train_dataloader()
    sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=1, shuffle=False)
    swapped = _update_dataloader(loader, sampler, mode="fit")
    assert isinstance(swapped, AheadLoader) and swapped.prepare is loader.prepare
    batches = list(swapped)
    assert len(batches) == 2 and all("edge" in b for b in batches)
    assert batches[0]["index"].tolist() == [1, 3, 5, 7]  # rank 1's half
