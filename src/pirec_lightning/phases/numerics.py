"""Numeric faults: a NaN or infinite loss or gradient skips the whole GAN step, decided on the device.

:class:`NonFiniteGuard` looks at both networks' losses and gradients after the backward passes
and before any optimizer step, and takes the step for both networks or for neither. The decision
never leaves the device (no host sync in the training step):

- a 0/1 float flag is computed on the device (:func:`non_finite_flag`) and, under DDP, max-reduced
  across ranks (an all-reduce, asynchronous on NCCL), so every rank skips the same steps;
- optimizers with a fused kernel (``fused=True``; :func:`fused_options` makes it the default for
  Adam, AdamW and SGD) are handed the flag as ``found_inf``, the way ``torch.amp.GradScaler``
  hands them its own: the kernel leaves the weights and moments untouched and the step count is
  given back, on the device;
- with a gradient scaler (``16-mixed``) only the losses are checked (infinite scaled gradients
  are the scaler's business); a bad loss is handed to the scaler by making one gradient element
  NaN on the device, so the scaler skips that step (and lowers its scale) as for an overflow;
- any other optimizer falls back to reading the flag on the host (one sync per step).

A skipped step still counts as a step (``global_step`` and ``trainer.max_steps`` count the batches
trained on, as with a scaler's skipped steps); the skipped steps are counted on the device
(:attr:`NonFiniteGuard.skipped_tensor`, logged as ``train/skipped_steps``). After
``max_bad_steps`` consecutive bad steps training stops (the phase module asks the Trainer to stop;
``train`` then saves ``last.ckpt``, which holds the last good weights, and raises
:class:`~pirec_lightning.errors.TrainingDiverged`). That count reaches the host through a
non-blocking copy that is read once it has landed: on CPU at once, on CUDA a step or two later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["NonFiniteGuard", "fused_options", "non_finite_flag"]

#: optimizers whose fused kernels skip a step on the device when given ``found_inf``
_FUSED = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
#: constructor arguments that choose an implementation (the user's choice wins)
_IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def fused_options(optimizer_class: Any, config: dict[str, Any], device: torch.device) -> dict:
    """``{"fused": True}`` when ``optimizer_class`` is Adam, AdamW or SGD, ``device`` has their
    fused kernels and ``config`` picks no implementation itself; else ``{}``.

    A fused optimizer lets :class:`NonFiniteGuard` skip a step without a host sync.
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, _FUSED)):
        return {}
    if any(config.get(key) is not None for key in _IMPLEMENTATION):
        return {}
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # an older or newer torch without the helper: keep the default
        return {}
    return {"fused": True} if device.type in _get_fused_kernels_supported_devices() else {}


def non_finite_flag(losses: Iterable[Tensor], modules: Iterable[nn.Module] = ()) -> Tensor:
    """1.0 when any loss or any gradient of ``modules`` is NaN or infinite, else 0.0.

    A float32 0-dim tensor on the losses' device, made without a host sync (the form fused
    optimizers take as ``found_inf``).

    Args:
        losses: scalar loss tensors.
        modules: networks whose ``.grad`` tensors are checked (parameters without a gradient
            are ignored).
    """
    checks = [torch.stack([loss.detach().float() for loss in losses])]
    grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if grads:
        # one fused kernel; an inf/NaN anywhere shows in a norm
        checks.append(torch.stack(torch._foreach_norm(grads)).float())
    finite = torch.stack([torch.isfinite(c).all() for c in checks]).all()
    return (~finite).float()


def _max_across_ranks(flag: Tensor) -> Tensor:
    """The flag's maximum over the DDP process group (in place; no host sync on NCCL)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag


def _skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` honours ``found_inf``: a fused optimizer in every group (a
    state dict saved by an unfused one, e.g. an older checkpoint, turns ``fused`` off again)."""
    return getattr(optimizer, "_step_supports_amp_scaling", False) and all(
        group.get("fused") for group in optimizer.param_groups
    )


def _poison(optimizer: torch.optim.Optimizer, flag: Tensor) -> None:
    """Make one gradient element NaN where ``flag`` is set, so a gradient scaler skips the step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                element = param.grad[(0,) * param.grad.dim()]  # a view of one element
                element.masked_fill_(flag > 0, float("nan"))
                return


class _HostCopy:
    """The latest value of a 0-dim device tensor, readable on the host without waiting for it.

    CUDA: a non-blocking copy into pinned memory, read once its event says it landed (a copy
    still in flight is not overwritten). CPU: copied and readable at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.buffer = torch.zeros(1, dtype=torch.float32, pin_memory=self.cuda)
        self.view = self.buffer.numpy()  # host memory: reading it is no torch call, no sync
        self.event = torch.cuda.Event() if self.cuda else None
        self.in_flight = False

    def publish(self, value: Tensor) -> None:
        if self.event is not None and self.in_flight and not self.event.query():
            return  # the previous copy has not landed; a later one carries a newer value
        self.buffer.copy_(value.reshape(1), non_blocking=self.cuda)
        if self.event is not None:
            self.event.record()
            self.in_flight = True

    def read(self) -> float | None:
        """The value, or None while the copy is still in flight."""
        if self.event is not None and self.in_flight and not self.event.query():
            return None
        return float(self.view[0])


class NonFiniteGuard:
    """Takes or skips the optimizer steps of a GAN step, counting skipped and consecutive bad
    steps on the device.

    Args:
        max_bad_steps: consecutive bad steps after which :attr:`exhausted` becomes true.
    """

    def __init__(self, max_bad_steps: int = 10) -> None:
        self.max_bad_steps = int(max_bad_steps)
        self._base = 0  # skipped steps before this run (a resumed checkpoint's count)
        # device counters, made on the first step: skipped, consecutive, longest run of bad steps
        self._counts: Tensor | None = None
        self._host: _HostCopy | None = None
        self._tripped = False

    # ---------------------------------------------------------------------------- the step
    def step(
        self,
        optimizers: Sequence[Any],
        losses: Sequence[Tensor],
        modules: Iterable[nn.Module] = (),
        scaled: bool = False,
    ) -> Tensor:
        """Step every optimizer (Lightning's or plain ones), or none of them in effect when a
        loss or gradient is non-finite on any rank; the 0/1 flag of this step is returned.

        Args:
            optimizers: stepped in this order.
            losses: scalar losses of the step.
            modules: networks whose gradients are checked (none with a gradient scaler).
            scaled: a gradient scaler (``16-mixed``) steps the optimizers.
        """
        flag = _max_across_ranks(non_finite_flag(losses, modules))
        self._count(flag)
        take_on_host: bool | None = None
        for optimizer in optimizers:
            raw = getattr(optimizer, "optimizer", optimizer)  # under a LightningOptimizer
            if scaled:
                _poison(raw, flag)
                optimizer.step()
            elif _skips_on_device(raw):
                raw.found_inf = flag
                try:
                    optimizer.step()
                finally:
                    del raw.found_inf
            else:
                if take_on_host is None:  # no device-side skip: the one host sync left
                    take_on_host = not bool(flag)
                if take_on_host:
                    optimizer.step()
                else:
                    optimizer.zero_grad(set_to_none=True)
        return flag

    def _count(self, flag: Tensor) -> None:
        if self._counts is None or self._counts.device != flag.device:
            self._counts = torch.zeros(3, dtype=torch.float32, device=flag.device)
            self._host = _HostCopy(flag.device)
        skipped, consecutive, longest = self._counts.unbind()
        skipped.add_(flag)
        consecutive.add_(flag).mul_(flag)  # +1 on a bad step, back to 0 on a good one
        torch.maximum(longest, consecutive, out=longest)
        self._host.publish(longest)

    def poll(self) -> bool:
        """Whether training should stop, from the longest run of bad steps known on the host
        (no sync: on CUDA the answer can lag a step or two)."""
        if not self._tripped and self._host is not None:
            longest = self._host.read()
            self._tripped = longest is not None and longest >= self.max_bad_steps
        return self._tripped

    # ------------------------------------------------------------------- counts (host reads)
    @property
    def skipped_tensor(self) -> Tensor:
        """Skipped steps in all, a float32 0-dim tensor on the device (for logging)."""
        if self._counts is None:
            return torch.tensor(float(self._base))
        return self._counts[0] + self._base

    @property
    def skipped(self) -> int:
        """Skipped steps in all, this run and the resumed checkpoint's (reads the device)."""
        return self._base + (0 if self._counts is None else int(self._counts[0].item()))

    @skipped.setter
    def skipped(self, value: int) -> None:
        self._base = int(value)
        if self._counts is not None:
            self._counts[0].zero_()

    @property
    def consecutive(self) -> int:
        """Bad steps in a row up to the last step (reads the device)."""
        return 0 if self._counts is None else int(self._counts[1].item())

    @property
    def longest(self) -> int:
        """The longest run of bad steps in this run (reads the device)."""
        return 0 if self._counts is None else int(self._counts[2].item())

    @property
    def exhausted(self) -> bool:
        """``max_bad_steps`` bad steps in a row happened: training should stop (reads the
        device)."""
        if self._counts is None:
            return False
        return self._tripped or self.longest >= self.max_bad_steps
