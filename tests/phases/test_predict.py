"""`trainer.predict(model, datamodule)` reconstructs the test split with a trained phase."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from pirec_lightning.phases import RefinementPhase
from pirec_lightning.training import build_datamodule


def test_trainer_predict_reconstructs_the_test_split(tiny_run, make_cfg):
    model = RefinementPhase.load_from_checkpoint(
        tiny_run["refinement"], map_location="cpu", weights_only=True
    )
    datamodule = build_datamodule(make_cfg("debug=tiny", "data.batch_size=4"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        limit_predict_batches=2,
    )
    predictions = trainer.predict(model, datamodule=datamodule)
    assert len(datamodule.files()["test"]) > 8
    indices = torch.cat([p["index"] for p in predictions])
    assert indices.tolist() == list(range(8))  # the test split, in order
    first = predictions[0]
    assert first["output"].shape == (len(first["index"]), 3, 32, 32)
    assert float(first["output"].min()) >= 0 and float(first["output"].max()) <= 1
    # the same as the module's own two-stage forward on the same inputs
    batch = datamodule.make_inputs(next(iter(datamodule.predict_dataloader())), "predict")
    with torch.no_grad():
        preliminary = model.preliminary_generator(
            torch.cat([batch["color_domain"], batch["edge"]], 1)
        )
        expected = model.generator(torch.cat([preliminary, batch["edge"]], 1))
        if model.residual:  # the default refinement paints a correction of the preliminary
            expected = (preliminary + 2 * expected - 1).clamp(0, 1)
    torch.testing.assert_close(first["input"], preliminary)
    torch.testing.assert_close(first["output"], expected)
