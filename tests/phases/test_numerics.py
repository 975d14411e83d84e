"""The non-finite guard skips a bad step on the device: weights, moments and step counts stay
exactly as they were, with every kind of optimizer stepping, and with DDP ranks that disagree."""

from __future__ import annotations

import copy
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from pirec_lightning.phases.numerics import NonFiniteGuard, fused_options, non_finite_flag


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def _backward(net: nn.Module, bad: bool, scaler: torch.amp.GradScaler | None = None):
    x = torch.ones(2, 4)
    if bad:
        x[0, 0] = float("nan")
    loss = net(x).pow(2).mean()
    net.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    return loss


def _state(net: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return copy.deepcopy({"net": net.state_dict(), "opt": optimizer.state_dict()["state"]})


def _same(a: dict, b: dict) -> bool:
    flat = [(a["net"], b["net"])] + [(a["opt"][k], b["opt"][k]) for k in a["opt"]]
    return a["opt"].keys() == b["opt"].keys() and all(
        torch.equal(x[key], y[key]) for x, y in flat for key in x
    )


class ScaledStep:
    """What Lightning's ``16-mixed`` plugin does on ``optimizer.step()``: the scaler steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self.optimizer, self.scaler = optimizer, scaler

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()


def test_flag_is_a_device_tensor():
    net = _net()
    good = _backward(net, bad=False)
    assert non_finite_flag([good], [net]).item() == 0.0
    assert non_finite_flag([good, torch.tensor(float("inf"))]).item() == 1.0
    _backward(net, bad=True)
    flag = non_finite_flag([good], [net])  # the loss is fine, the gradients are not
    assert flag.dtype == torch.float32 and flag.dim() == 0 and flag.item() == 1.0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: torch.optim.Adam(p, 1e-2, fused=True), id="fused-adam"),
        pytest.param(lambda p: torch.optim.SGD(p, 1e-2, momentum=0.9, fused=True), id="fused-sgd"),
        pytest.param(lambda p: torch.optim.Adam(p, 1e-2, foreach=True), id="host-fallback"),
    ],
)
def test_bad_step_changes_nothing(make):
    net = _net()
    optimizer = make(net.parameters())
    guard = NonFiniteGuard(max_bad_steps=2)
    guard.step([optimizer], [_backward(net, bad=False)], [net])  # a good step makes state
    before = _state(net, optimizer)
    guard.step([optimizer], [_backward(net, bad=True)], [net])
    assert _same(before, _state(net, optimizer))
    assert guard.skipped == 1 and guard.skipped_tensor.item() == 1 and guard.consecutive == 1
    assert not guard.poll()
    guard.step([optimizer], [_backward(net, bad=False)], [net])
    assert not _same(before, _state(net, optimizer)) and guard.consecutive == 0
    for _ in range(2):
        guard.step([optimizer], [_backward(net, bad=True)], [net])
    assert guard.poll() and guard.exhausted and guard.longest == 2 and guard.skipped == 3


def test_an_unfused_state_dict_falls_back_to_the_host():
    """A checkpoint of an unfused Adam (older runs) turns ``fused`` off on load: the guard then
    decides on the host instead of handing ``found_inf`` to a step that would refuse it."""
    net = _net()
    old = torch.optim.Adam(net.parameters(), 1e-2, foreach=True)
    _backward(net, bad=False)
    old.step()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2, fused=True)
    optimizer.load_state_dict(old.state_dict())
    guard = NonFiniteGuard()
    before = _state(net, optimizer)
    guard.step([optimizer], [_backward(net, bad=True)], [net])
    assert _same(before, _state(net, optimizer)) and guard.skipped == 1
    guard.step([optimizer], [_backward(net, bad=False)], [net])
    assert not _same(before, _state(net, optimizer))


def test_a_bad_loss_reaches_the_gradient_scaler():
    """With a scaler only losses are checked; a bad one makes the scaler skip the step."""
    net = _net()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    guard = NonFiniteGuard()
    step = ScaledStep(optimizer, scaler)
    guard.step([step], [_backward(net, False, scaler)], scaled=True)
    before = _state(net, optimizer)
    _backward(net, False, scaler)  # finite gradients, and a NaN loss
    guard.step([step], [torch.tensor(float("nan"))], scaled=True)
    assert _same(before, _state(net, optimizer)) and guard.skipped == 1
    assert scaler.get_scale() < 4.0  # the scaler backed off as for an overflow


def test_fused_is_the_default_only_where_nobody_chose():
    cpu = torch.device("cpu")
    assert fused_options(torch.optim.Adam, {"lr": 1e-4}, cpu) == {"fused": True}
    assert fused_options(torch.optim.AdamW, {}, cpu) == {"fused": True}
    assert fused_options(torch.optim.Adam, {"foreach": True}, cpu) == {}
    assert fused_options(torch.optim.RMSprop, {}, cpu) == {}


def _rank(rank: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        net = _net()
        optimizer = torch.optim.Adam(net.parameters(), 1e-2, fused=True)
        guard = NonFiniteGuard()
        guard.step([optimizer], [_backward(net, bad=False)], [net])
        before = _state(net, optimizer)
        # a loss that only rank 0 sees as bad (each rank's own gradients are finite)
        _backward(net, bad=False)
        loss = torch.tensor(float("nan") if rank == 0 else 1.0)
        flag = guard.step([optimizer], [loss], [net])
        unchanged = _same(before, _state(net, optimizer))
        result = f"{flag.item()} {unchanged} {guard.skipped}"
    finally:
        dist.destroy_process_group()
    (Path(folder) / f"rank{rank}.txt").write_text(result)


def test_ranks_skip_together(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # spawned, not forked: a fork of a process whose OpenMP pool has started can deadlock
    torch.multiprocessing.start_processes(
        _rank, args=(port, str(tmp_path)), nprocs=2, start_method="spawn"
    )
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "1.0 True 1"
