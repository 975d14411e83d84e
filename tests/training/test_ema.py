"""Generator EMA (``model.ema_decay``): the averaged generator is what is validated, saved,
handed over and loaded for inference; the discriminator is not averaged."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio

from pirec_lightning.config import ConfigError
from pirec_lightning.phases import GeneratingPhase, RefinementPhase, init_from_checkpoint
from pirec_lightning.training import train
from pirec_lightning.training.ema import GeneratorAverage, GeneratorEMA


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(1, 1, bias=False)
        self.discriminator = nn.Linear(1, 1, bias=False)


def test_generator_average_math() -> None:
    """First update copies; then w <- d w + (1 - d) w_live, d = min(decay, (1+n)/(10+n)) after n;
    the discriminator always copies the live weights."""
    live = Pair()
    average = GeneratorAverage(live, decay=0.5)
    expected = None
    for n, value in enumerate([1.0, 3.0, 7.0, -1.0]):
        with torch.no_grad():
            live.generator.weight.fill_(value)
            live.discriminator.weight.fill_(value)
        average.update_parameters(live)
        decay = min(0.5, (1 + n) / (10 + n))  # n updates already averaged
        expected = value if n == 0 else decay * expected + (1 - decay) * value
        assert average.module.generator.weight.item() == pytest.approx(expected)
        assert average.module.discriminator.weight.item() == value
    assert expected != -1.0


def test_ema_decay_must_be_a_fraction(make_cfg) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        GeneratorEMA(1.5)
    with pytest.raises(ConfigError, match="model.ema_decay"):
        train(make_cfg("phase=imitation", "debug=tiny", "model.ema_decay=1.0"))


def _generator(state: dict, prefix: str = "generator.") -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def test_ema_weights_are_validated_saved_and_handed_over(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "phase=generating",
        "debug=tiny",
        "model.ema_decay=0.6",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        output_dir=tmp_path / "gen",
    )
    metrics, objects = train(cfg)
    checkpoint = torch.load(objects["last_ckpt"], map_location="cpu", weights_only=False)
    averaged = _generator(checkpoint["state_dict"])
    live = _generator(checkpoint["current_model_state"])
    assert any(not torch.equal(averaged[k], live[k]) for k in averaged), "EMA == live weights"
    for key, value in _generator(checkpoint["state_dict"], "discriminator.").items():
        assert torch.equal(value, checkpoint["current_model_state"][f"discriminator.{key}"])

    # after training the module itself holds the average
    model: GeneratingPhase = objects["model"]
    for key, value in model.generator.state_dict().items():
        assert torch.equal(value, averaged[key])

    # the last validation (one batch) measured the averaged generator, not the live one
    datamodule = objects["datamodule"]
    batch = next(iter(datamodule.val_dataloader()))
    batch = datamodule.make_inputs(batch, "validate")
    with torch.no_grad():
        psnr_avg = PeakSignalNoiseRatio(data_range=1.0)(
            model.reconstruct(batch).clamp(0, 1), batch["image"]
        )
        model.generator.load_state_dict(live)
        psnr_live = PeakSignalNoiseRatio(data_range=1.0)(
            model.reconstruct(batch).clamp(0, 1), batch["image"]
        )
    assert metrics["val/psnr"] == pytest.approx(psnr_avg.item(), abs=1e-4)
    assert metrics["val/psnr"] != pytest.approx(psnr_live.item(), abs=1e-4)

    # hand-over (init_from / phase=all) and loading for inference get the average
    refinement = RefinementPhase(model=dict(model.hparams.model), loss={"vgg": "off"})
    init_from_checkpoint(refinement, objects["last_ckpt"])
    loaded = GeneratingPhase.load_from_checkpoint(objects["last_ckpt"])
    for key, value in averaged.items():
        assert torch.equal(refinement.preliminary_generator.state_dict()[key], value)
        assert torch.equal(refinement.generator.state_dict()[key], value)
        assert torch.equal(loaded.generator.state_dict()[key], value)
