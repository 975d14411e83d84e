"""Mixed precision: the one place that decides between bfloat16 and float16.

Training (``trainer.precision=mixed``) and inference (autocast on CUDA, predict Trainers) both ask
:func:`mixed_precision` / :func:`autocast_dtype`, so they always agree.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["MIXED", "PRECISIONS", "autocast_dtype", "mixed_precision", "resolve_precision"]

#: ``trainer.precision`` values pirec-lightning accepts
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "mixed")
#: decided at run time: ``bf16-mixed`` where the device supports it, else ``16-mixed``
MIXED = "mixed"


def autocast_dtype(device_type: str = "cuda") -> torch.dtype:
    """bfloat16 where the device supports it (CPU, CUDA compute capability >= 8.0), else
    float16."""
    if device_type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def mixed_precision(device_type: str = "cuda") -> str:
    """Lightning's name of :func:`autocast_dtype`: ``bf16-mixed`` or ``16-mixed``."""
    return "bf16-mixed" if autocast_dtype(device_type) == torch.bfloat16 else "16-mixed"


def resolve_precision(precision: Any, accelerator: Any = None) -> Any:
    """``mixed`` becomes :func:`mixed_precision` of the accelerator; other values pass through.

    Decided in the process that builds the Trainer, i.e. on the machine that trains.
    """
    if str(precision) != MIXED:
        return precision
    cuda = str(accelerator) in ("gpu", "cuda") or (
        str(accelerator) == "auto" and torch.cuda.is_available()
    )
    return mixed_precision("cuda" if cuda else "cpu")
