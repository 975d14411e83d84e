"""The DataModule's on-device hook: shapes, ranges, device, stage handling."""

from __future__ import annotations

import pytest
import torch

from pirec_lightning.data import PIRECDataModule
from pirec_lightning.errors import DataError
from tests.helpers import quiet_trainer


@pytest.fixture(scope="module")
def datamodule() -> PIRECDataModule:
    dm = PIRECDataModule(image_size=32, batch_size=4, num_workers=0, limit=8)
    dm.setup("fit")
    return dm


def _first_batch(dm: PIRECDataModule, loader: str = "train_dataloader") -> dict:
    return next(iter(getattr(dm, loader)()))


def test_loader_yields_decoded_images_only(datamodule):
    batch = _first_batch(datamodule)
    assert set(batch) == {"image", "index"}
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1


@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_hook_makes_every_input_on_the_batch_device(datamodule, stage):
    batch = _first_batch(datamodule)
    made = datamodule.make_inputs(batch, stage)
    assert made["edge"].shape == (4, 1, 32, 32)
    assert made["mask"].shape == (4, 1, 32, 32)
    assert made["color_domain"].shape == (4, 3, 32, 32)
    for key in ("edge", "mask"):
        assert set(made[key].unique().tolist()) <= {0.0, 1.0}
    assert made["color_domain"].min() >= 0 and made["color_domain"].max() <= 1
    assert made["edge"].sum() > 0, "emoji have edges"
    assert all(made[k].device == batch["image"].device for k in ("edge", "mask", "color_domain"))


def test_validation_inputs_repeat_and_training_inputs_vary(datamodule):
    batch = _first_batch(datamodule, "val_dataloader")
    one = datamodule.make_inputs(dict(batch), "validate")
    two = datamodule.make_inputs(dict(batch), "validate")
    for key in ("edge", "mask", "color_domain"):
        assert torch.equal(one[key], two[key]), key
    first = datamodule.make_inputs(dict(batch), "fit")
    second = datamodule.make_inputs(dict(batch), "fit")
    assert not torch.equal(first["mask"], second["mask"])


def test_outputs_follow_the_phase(datamodule):
    dm = PIRECDataModule(image_size=32, batch_size=2, num_workers=0, limit=2, outputs=("edge",))
    dm.setup("fit")
    made = dm.make_inputs(_first_batch(dm), "fit")
    assert "edge" in made and "mask" not in made and "color_domain" not in made


def test_hook_runs_through_a_trainer(datamodule, tmp_path):
    """Lightning calls on_after_batch_transfer for the sanity check and training."""

    from pirec_lightning.phases import GeneratingPhase
    from tests.phases.conftest import TINY_LOSS, TINY_MODEL

    seen: list[tuple[str, tuple[str, ...]]] = []

    class Spy(GeneratingPhase):
        def training_step(self, batch, batch_idx):
            seen.append((self.trainer.datamodule.current_stage(), tuple(sorted(batch))))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            stage = self.trainer.datamodule.current_stage()
            seen.append((stage, tuple(sorted(batch)), self.trainer.sanity_checking))
            return super().validation_step(batch, batch_idx)

    trainer = quiet_trainer(
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        default_root_dir=tmp_path,
    )
    trainer.fit(Spy(model=TINY_MODEL, loss=TINY_LOSS), datamodule=datamodule)
    # the sanity check runs first and gets evaluation inputs (fixed values, no dropout)
    assert seen[0] == ("validate", ("color_domain", "edge", "image", "index"), True)
    assert ("fit", ("color_domain", "edge", "image", "index")) in seen


def test_unknown_stage_is_rejected(datamodule):
    with pytest.raises(ValueError, match="unknown stage"):
        datamodule.make_inputs(_first_batch(datamodule), "warmup")


def test_missing_root_message(tmp_path):
    dm = PIRECDataModule(root=tmp_path / "missing", image_size=32, num_workers=0)
    with pytest.raises(DataError, match="missing"):
        dm.setup("fit")


def test_training_draws_continue_after_a_state_round_trip():
    dm = PIRECDataModule(image_size=32, batch_size=2, num_workers=0, limit=2)
    dm.setup("fit")
    batch = _first_batch(dm)
    dm.make_inputs(dict(batch), "fit")
    state = dm.state_dict()
    expected = dm.make_inputs(dict(batch), "fit")

    resumed = PIRECDataModule(image_size=32, batch_size=2, num_workers=0, limit=2)
    resumed.setup("fit")
    resumed.load_state_dict(state)
    again = resumed.make_inputs(dict(batch), "fit")
    assert torch.equal(again["mask"], expected["mask"])
    fresh = PIRECDataModule(image_size=32, batch_size=2, num_workers=0, limit=2)
    fresh.setup("fit")
    assert not torch.equal(fresh.make_inputs(dict(batch), "fit")["mask"], expected["mask"])
