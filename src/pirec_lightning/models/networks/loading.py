"""Generators rebuilt from saved weights: this package's checkpoints and PI-REC's ``.pth`` files.

Files are read by :func:`pirec_lightning.checkpoints.read_checkpoint` (``weights_only``: no pickled
code runs). Networks are rebuilt from their saved settings by our own classes only: a checkpoint
names no class to import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pirec_lightning.checkpoints import load_strict, read_checkpoint
from pirec_lightning.errors import CheckpointError
from pirec_lightning.models.networks.generator import Generator

__all__ = [
    "GENERATOR_TARGET",
    "build_generator",
    "generator_settings",
    "pirec_settings",
    "read_pirec_generator",
]

#: the ``_target_`` of the generator config this package writes into its checkpoints
GENERATOR_TARGET = "pirec_lightning.models.networks.Generator"
_GENERATOR_ARGS = ("in_channels", "out_channels", "base_channels", "res_blocks")


def generator_settings(node: Mapping[str, Any]) -> dict[str, int]:
    """The :class:`Generator` arguments of a saved ``model.generator`` config node.

    Raises:
        CheckpointError: the node names another class (it is not imported, whatever it names).
    """
    target = node.get("_target_", GENERATOR_TARGET)
    if target != GENERATOR_TARGET:
        raise CheckpointError(
            f"the checkpoint's generator is {target!r}; only {GENERATOR_TARGET} can be rebuilt"
        )
    return {k: int(node[k]) for k in _GENERATOR_ARGS if k in node}


def build_generator(
    settings: Mapping[str, int], weights: Mapping[str, torch.Tensor], source: str
) -> Generator:
    """A :class:`Generator` with ``settings`` holding ``weights`` (strict: every key, every shape).

    Raises:
        CheckpointError: the weights do not fit the architecture, naming the first mismatch.
    """
    generator = Generator(**settings)
    load_strict(
        generator, weights, "generator", source, "is it a PI-REC generator of these settings?"
    )
    return generator


def pirec_settings(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Architecture of an original PI-REC generator ``state_dict``, read from its shapes."""
    try:
        first, last = state["encoder.1.weight"], state["decoder.9.weight"]
    except KeyError as missing:
        raise CheckpointError(f"no {missing} tensor: not a PI-REC generator state_dict") from None
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"middle\.(\d+)\.", k))}
    return {
        "in_channels": int(first.shape[1]),
        "out_channels": int(last.shape[0]),
        "base_channels": int(first.shape[0]),
        "res_blocks": len(blocks),
    }


def read_pirec_generator(path: str | Path) -> tuple[Generator, int | None]:
    """An original PI-REC ``G_Model_gen_*.pth`` / ``R_Model_gen_*.pth`` as a :class:`Generator`.

    The file holds ``{'iteration': int, 'generator': state_dict}`` (a bare ``state_dict`` is
    accepted too); the architecture (width, residual blocks) is read from the tensor shapes.

    Returns:
        ``(generator, iteration)``; the iteration is None when the file has none.
    """
    data = read_checkpoint(path, "PI-REC generator")
    if isinstance(data, Mapping) and isinstance(data.get("generator"), Mapping):
        state, iteration = data["generator"], data.get("iteration")
    elif isinstance(data, Mapping) and all(isinstance(v, torch.Tensor) for v in data.values()):
        state, iteration = data, None
    else:
        raise CheckpointError(
            f"{path} is not a PI-REC generator file ({{'iteration', 'generator'}} expected)"
        )
    # the original saves from DataParallel sometimes: drop its prefix
    state = {k.removeprefix("module."): v for k, v in state.items()}
    generator = build_generator(pirec_settings(state), state, str(path))
    return generator, int(iteration) if iteration is not None else None
