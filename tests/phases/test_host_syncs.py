"""The training step reads nothing back from the device (no host syncs), so a GPU never stalls:
the non-finite guard (``phases/numerics.py``) decides on the device whether the optimizer updates
are taken (fused Adam's ``found_inf``), and its counters reach the host without waiting."""

from __future__ import annotations

import traceback

import pytorch_lightning as pl
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader

from pirec_lightning.phases import GeneratingPhase
from tests.phases.conftest import TINY_LOSS, TINY_MODEL, Batches

#: tensor calls that wait for the device: values to Python, data-dependent shapes
SYNCING = {
    "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "equal", "is_nonzero",
    "nonzero", "unique", "masked_select",
}  # fmt: skip


class SyncCalls(TorchFunctionMode):
    """Records syncing calls with the line that made them, except the optimizers': Adam keeps
    its step count in host memory (unless ``capturable``), so reading it is no device sync."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            frame = traceback.extract_stack(limit=3)[0]
            if "/torch/optim/" not in frame.filename:
                self.calls.append(f"{name} at {frame.filename}:{frame.lineno}")
        return func(*args, **(kwargs or {}))


def test_training_step_makes_no_host_sync():
    calls = SyncCalls()

    class Recorded(GeneratingPhase):
        def training_step(self, batch, batch_idx):
            with calls:
                return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    module = Recorded(model=TINY_MODEL, loss=TINY_LOSS)
    trainer.fit(module, DataLoader(Batches(4), batch_size=2))
    assert module.generator_step == 2
    assert all(opt.optimizer.defaults["fused"] for opt in module.optimizers())
    assert calls.calls == []
