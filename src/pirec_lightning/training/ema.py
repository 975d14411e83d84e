"""Generator EMA on Lightning's own weight-averaging callback (``model.ema_decay``).

Lightning's :class:`~pytorch_lightning.callbacks.WeightAveraging` keeps an averaged copy of the
module, swaps it in for validation (so metrics and sample grids come from it), writes it as the
checkpoint's ``state_dict`` (the live weights go to ``current_model_state``, which a resume
restores) and copies it into the module when training ends. Everything that reads weights by
key, the hand-over to the next phase (``init_from``, ``phase=all``) and inference, therefore
gets the averaged generator.

:class:`GeneratorEMA` averages the ``generator.`` tensors only: the discriminator (and
refinement's frozen ``preliminary_generator``) are kept equal to the live ones, so the
adversarial game resumes and hands over exactly as it was trained.
"""

from __future__ import annotations

import itertools

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch import nn
from torch.optim.swa_utils import AveragedModel

from pirec_lightning.models.settings import check_ema_decay

#: the first updates use a smaller decay, (1 + n) / (10 + n), so an early average is not
#: dominated by the weights the phase started from (random ones, for imitation)
WARMUP = 10


class GeneratorAverage(AveragedModel):
    """An :class:`AveragedModel` of a phase module whose ``generator.`` parameters and buffers
    follow an exponential moving average and whose other tensors copy the live ones.

    Args:
        module: the phase LightningModule.
        decay: EMA decay per generator step, in (0, 1).
        device: where the average lives (default: with the module).
    """

    def __init__(self, module: nn.Module, decay: float, device: torch.device | None = None) -> None:
        super().__init__(module, device=device, use_buffers=True)
        self.decay = float(decay)

    def current_decay(self) -> float:
        """The decay of the next update: ``min(decay, (1 + n) / (WARMUP + n))``."""
        n = int(self.n_averaged)
        return min(self.decay, (1 + n) / (WARMUP + n))

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        first = int(self.n_averaged) == 0
        weight = 1.0 - self.current_decay()
        averaged = itertools.chain(self.module.named_parameters(), self.module.named_buffers())
        live = itertools.chain(model.parameters(), model.buffers())
        for (name, average), current in zip(averaged, live, strict=True):
            current = current.detach().to(average.device)
            if first or not name.startswith("generator.") or not average.is_floating_point():
                average.copy_(current)
            else:
                average.lerp_(current, weight)
        self.n_averaged += 1


class GeneratorEMA(WeightAveraging):
    """Lightning's weight-averaging callback with an EMA of the generator only.

    Updated once per batch (after the generator's optimizer step). Validation, sample grids,
    the saved ``state_dict``, the hand-over and inference use the average.

    Args:
        decay: EMA decay per generator step, in (0, 1) (``model.ema_decay``).
        device: where the average lives (default: with the module).

    >>> GeneratorEMA(0.999).decay
    0.999
    """

    def __init__(self, decay: float, device: torch.device | str | None = None) -> None:
        check_ema_decay(decay)
        super().__init__(device=device, use_buffers=True)
        self.decay = float(decay)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            device = self._device or pl_module.device
            self._average_model = GeneratorAverage(pl_module, self.decay, device=device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the average lives where the module lives: the trainer moves the module after setup
        average = self._average_model
        if average is not None and self._device is None:
            average.to(pl_module.device)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        # once per batch (Lightning's step counts both optimizers; the callback sees a batch end)
        return step_idx is not None
