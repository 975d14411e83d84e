"""The training step reads nothing back from the device (no host syncs), so a GPU never stalls:
the non-finite guard (``phases/numerics.py``) decides on the device whether the optimizer updates
are taken (fused Adam's ``found_inf``), and its counters reach the host without waiting."""

from __future__ import annotations

import traceback
from contextlib import nullcontext

from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader

from pirec_lightning.phases import GeneratingPhase
from tests.helpers import quiet_trainer
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


class HostData(TorchFunctionMode):
    """Records tensors made from Python data: on a GPU each is a copy from pageable host memory,
    which waits for the stream (a logged Python number is one)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "tensor":
            self.calls.append("".join(traceback.format_stack(limit=6)[:-1]))
        return func(*args, **(kwargs or {}))


def test_training_step_makes_no_host_sync():
    calls, made = SyncCalls(), HostData()

    class Recorded(GeneratingPhase):
        def training_step(self, batch, batch_idx):
            # from the second batch on: the first registers Lightning's logged-metric states
            with calls, made if batch_idx > 0 else nullcontext():
                return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(
        max_steps=6,
        limit_val_batches=0,
    )
    module = Recorded(model=TINY_MODEL, loss=TINY_LOSS)
    trainer.fit(module, DataLoader(Batches(6), batch_size=2))
    assert module.generator_step == 3
    assert all(opt.optimizer.defaults["fused"] for opt in module.optimizers())
    assert calls.calls == []
    assert made.calls == [], made.calls
