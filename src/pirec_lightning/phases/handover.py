"""Weights move between phases; training state does not.

:func:`init_from_checkpoint` copies the ``generator.`` and ``discriminator.`` tensors of an earlier
phase's Lightning checkpoint into a new phase module (for refinement, the generator weights go
into both ``generator`` and ``preliminary_generator``). Optimizer state, step counters and loop
state are not read: ``ckpt_path`` is for resuming the same phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from pirec_lightning.checkpoints import (
    extract_prefix,
    load_strict,
    model_state,
    read_checkpoint,
)
from pirec_lightning.errors import CheckpointError, HandOverError
from pirec_lightning.pretrained import PREFIX, read_pretrained

__all__ = ["init_from_checkpoint", "read_init_from"]

_FIX = "use the model settings (model.generator / model.discriminator) it was trained with"


def read_init_from(path: str | Path) -> dict[str, Any]:
    """The ``init_from`` checkpoint, read once (``weights_only``), or a bundled model for
    ``pretrained:<name>``; its ``state_dict`` checked."""
    try:
        if str(path).startswith(PREFIX):  # a model bundled with the package
            checkpoint = read_pretrained(str(path))
        else:
            checkpoint = read_checkpoint(Path(path).expanduser(), "init_from checkpoint")
    except HandOverError:
        raise
    except CheckpointError as error:
        raise HandOverError(str(error)) from None
    model_state(checkpoint, path, error=HandOverError)
    return checkpoint


def init_from_checkpoint(
    module: nn.Module,
    source: str | Path | Mapping[str, Any],
    mapping: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, int]:
    """Copy weights from an earlier phase's checkpoint into ``module``.

    Args:
        module: the new phase module.
        source: a Lightning ``.ckpt`` of an earlier phase, or that checkpoint as
            :func:`read_init_from` returns it (so the file is read once).
        mapping: source prefix -> attributes of ``module`` that receive it. Default:
            ``generator.`` -> ``generator``, ``discriminator.`` -> ``discriminator``; a module
            with a ``preliminary_generator`` gets the source's ``preliminary_generator.``
            weights when it has them (a refinement checkpoint), else its ``generator.`` ones; a
            module without one (imitation, generating) takes a refinement checkpoint's first
            stage, ``preliminary_generator.``, as its ``generator``, and the first stage's own
            discriminator, ``preliminary_discriminator.``, where the checkpoint keeps one (a
            bundled model written by ``scripts/gpu_round.py``), else its ``discriminator.``.

    Returns:
        Tensors copied per receiving attribute.
    """
    checkpoint = read_init_from(source) if not isinstance(source, Mapping) else source
    path = source if not isinstance(source, Mapping) else "the init_from checkpoint"
    state = model_state(checkpoint, path, error=HandOverError)
    if mapping is None:
        mapping = {"generator.": ("generator",), "discriminator.": ("discriminator",)}
        if hasattr(module, "preliminary_generator"):
            # from generating: its generator is the preliminary one too; from refinement: keep
            # that checkpoint's own frozen preliminary generator
            if any(k.startswith("preliminary_generator.") for k in state):
                mapping["preliminary_generator."] = ("preliminary_generator",)
            else:
                mapping["generator."] = ("generator", "preliminary_generator")
        elif any(k.startswith("preliminary_generator.") for k in state):
            # a refinement checkpoint into imitation or generating: its first stage (edge +
            # colour domain -> image) is the network those phases train, not its refiner
            first_d = "preliminary_discriminator."
            if not any(k.startswith(first_d) for k in state):
                first_d = "discriminator."  # refinement's: the only one such a file keeps
            mapping = {"preliminary_generator.": ("generator",), first_d: ("discriminator",)}
    copied: dict[str, int] = {}
    for prefix, attributes in mapping.items():
        weights = extract_prefix(state, prefix)
        if not weights:
            raise HandOverError(f"{path} holds no '{prefix}' weights; is it a PI-REC checkpoint?")
        for attribute in attributes:
            load_strict(getattr(module, attribute), weights, attribute, path, _FIX, HandOverError)
            copied[attribute] = len(weights)
    return copied
