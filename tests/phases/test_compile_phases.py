"""``model.compile=true`` trains every phase on the CPU: the spectral-norm discriminator run twice
(real, fake) before one backward, the generator EMA and the non-finite guard, in float32 and
bf16-mixed. Inductor on the CPU: minutes on 2 cores."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from pirec_lightning.phases import PHASES
from pirec_lightning.training.ema import GeneratorEMA
from tests.helpers import quiet_trainer
from tests.phases.conftest import TINY_LOSS, TINY_MODEL, Batches


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase, precision",
    [
        ("imitation", "32-true"),
        ("generating", "32-true"),
        ("refinement", "32-true"),
        ("generating", "bf16-mixed"),
    ],
)
def test_two_compiled_training_steps(phase, precision, tmp_path):
    torch._dynamo.reset()  # no cache or recompile limit carried over from another test
    torch.manual_seed(0)
    module = PHASES[phase](model={**TINY_MODEL, "compile": True}, loss=TINY_LOSS)
    assert module.discriminator._compiled_call_impl is not None
    u = module.discriminator.conv1[0].weight_u.clone()
    trainer = quiet_trainer(
        max_steps=2 * module.optimizer_steps_per_batch,
        limit_val_batches=1,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        default_root_dir=tmp_path,
        precision=precision,
        callbacks=[GeneratorEMA(0.9)],
    )
    loader = DataLoader(Batches(), batch_size=2)
    trainer.fit(module, loader, loader)

    assert module.generator_step == 2
    assert module.numeric_guard.skipped == 0  # both steps taken for both networks
    metrics = trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "val/psnr"):
        assert torch.isfinite(metrics[key]), key
    assert not torch.equal(module.discriminator.conv1[0].weight_u, u)  # power iteration ran
