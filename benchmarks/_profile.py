"""``--profile PATH`` for the benchmark scripts: a Chrome trace of a few steps and the top ops.

One function, :func:`profile`. A script hands it a callable that runs one step (a forward, a
training step, a preprocessing batch), a trace path and, optionally, the device the step runs on:

>>> from _profile import profile  # benchmarks/ is on sys.path  # doctest: +SKIP
>>> step = lambda: rec.reconstruct(edge, color)  # doctest: +SKIP
>>> table = profile(step, "trace.json", device=edge.device)  # doctest: +SKIP

It runs ``warmup`` untimed steps (compilation, autotuning, CUDA graph capture, allocator), then
``steps`` steps under ``torch.profiler`` (CPU activity, plus CUDA when the device is CUDA), writes
the Chrome trace (JSON: open it in https://ui.perfetto.dev or chrome://tracing; each step is a
``step N`` range), prints the ``rows`` ops with the most self time (self device time on CUDA:
kernels; self CPU time on the CPU) and returns that table. To wire it into a script::

    parser.add_argument("--profile", metavar="PATH", help="write a Chrome trace of a few steps")
    ...
    if args.profile:
        from _profile import profile
        profile(step, args.profile, device=device, file=sys.stderr if args.json else None)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch
from torch.profiler import ProfilerActivity, record_function

__all__ = ["profile"]


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def profile(
    step: Callable[[], object],
    path: str | Path,
    steps: int = 5,
    warmup: int = 2,
    device: str | torch.device | None = None,
    rows: int = 15,
    file: TextIO | None = None,
) -> str:
    """Profile ``steps`` calls of ``step`` after ``warmup`` calls; write a Chrome trace to
    ``path``; print (to ``file``, default stdout) and return the top ``rows`` ops.

    Args:
        step: runs one step; its return value is ignored.
        path: the trace file (``.json``); missing folders are made.
        steps: profiled calls (at least 1).
        warmup: calls before profiling, not recorded.
        device: where ``step`` runs; None: CUDA when available. CUDA adds the CUDA activity and
            ranks ops by self device time; otherwise by self CPU time.
        rows: ops in the table.
        file: where the table goes (``sys.stderr`` keeps a ``--json`` stdout clean).

    Returns:
        The printed table: a header, a rule, one line per op (name, self ms per step, share of
        the total self time, calls per step).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for _ in range(warmup):
        step()
    _sync(cuda)
    with torch.profiler.profile(activities=activities) as prof:
        for index in range(steps):
            with record_function(f"step {index}"):
                step()
            _sync(cuda)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))

    attribute = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if not e.key.startswith("step ")]
    total = sum(getattr(e, attribute) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, attribute), reverse=True)[:rows]
    what = "self CUDA" if cuda else "self CPU"
    lines = [
        f"{'op':<60}{what + ' ms/step':>20}{'%':>8}{'calls/step':>12}",
        "-" * 100,
    ]
    for event in top:
        name = event.key if len(event.key) <= 58 else event.key[:55] + "..."
        lines.append(
            f"{name:<60}{getattr(event, attribute) / 1000 / steps:>20.3f}"
            f"{100 * getattr(event, attribute) / total:>8.1f}{event.count / steps:>12.1f}"
        )
    table = "\n".join(lines)
    print(f"profile of {steps} steps ({what} time), trace: {path}", file=file)
    print(table, file=file)
    return table
