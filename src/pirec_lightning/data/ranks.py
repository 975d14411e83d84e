"""Rank helpers below the training layer: the DataModule gathers its per-rank generator states."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from lightning_fabric.utilities.rank_zero import _get_rank

__all__ = ["all_gather_object", "global_rank"]


def global_rank() -> int:
    """This process's rank: from torch.distributed once initialized, else from the launcher's
    environment (``RANK``, ``SLURM_PROCID``, ``LOCAL_RANK``...), as Lightning reads it."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _get_rank() or 0


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` across the process group; ``[obj]`` without one.

    A collective: every rank must call it.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
