"""Numeric faults: a NaN or infinite loss or gradient skips the whole GAN step.

:class:`NonFiniteGuard` looks at both networks' losses and gradients after the backward passes
and before any optimizer step; a bad step is skipped for both networks (no weight and no
optimizer state changes), counted, and after ``max_bad_steps`` consecutive bad steps training
stops with the last good weights (the phase module asks the Trainer to stop; ``train`` then
saves ``last.ckpt`` and raises :class:`~pirec_lightning.errors.TrainingDiverged`).

With a gradient scaler (``16-mixed``) only the losses are checked: infinite scaled gradients are
the scaler's business (it skips that step itself and lowers the scale).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["NonFiniteGuard", "all_finite"]


def all_finite(losses: Iterable[Tensor], modules: Iterable[nn.Module] = ()) -> bool:
    """Whether every loss and every gradient of ``modules`` is finite (one device sync).

    Args:
        losses: scalar loss tensors.
        modules: networks whose ``.grad`` tensors are checked (parameters without a gradient
            are ignored).
    """
    checks = [torch.isfinite(loss.detach()).all() for loss in losses]
    grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if grads:
        norms = torch._foreach_norm(grads)  # one fused kernel; inf/NaN anywhere shows in a norm
        checks.append(torch.isfinite(torch.stack(norms)).all())
    return bool(torch.stack(checks).all()) if checks else True


class NonFiniteGuard:
    """Counts skipped steps and consecutive bad steps.

    Args:
        max_bad_steps: consecutive bad steps after which :attr:`exhausted` becomes true.
    """

    def __init__(self, max_bad_steps: int = 10) -> None:
        self.max_bad_steps = int(max_bad_steps)
        self.skipped = 0
        self.consecutive = 0

    def check(self, losses: Iterable[Tensor], modules: Iterable[nn.Module] = ()) -> bool:
        """True when the step may be taken; False (and counted) when it must be skipped."""
        if all_finite(losses, modules):
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        return False

    @property
    def exhausted(self) -> bool:
        """``max_bad_steps`` bad steps in a row: training should stop."""
        return self.consecutive >= self.max_bad_steps
