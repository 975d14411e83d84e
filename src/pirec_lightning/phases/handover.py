"""Weights move between phases; training state does not.

:func:`init_from_checkpoint` copies the ``generator.`` and ``discriminator.`` tensors of an earlier
phase's Lightning checkpoint into a new phase module (for refinement, the generator weights go
into both ``generator`` and ``preliminary_generator``). Optimizer state, step counters and loop
state are not read: ``ckpt_path`` is for resuming the same phase.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pirec_lightning.checkpoints import load_weights_only
from pirec_lightning.errors import HandOverError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` of a Lightning checkpoint (tensors only, on the CPU)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HandOverError(f"init_from checkpoint does not exist: {path}")
    checkpoint = load_weights_only(path, "init_from checkpoint")
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise HandOverError(f"{path} is not a Lightning checkpoint (no 'state_dict' in it)")
    return state


def extract_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed (torchgeo's extract_backbone)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _load(target: nn.Module, weights: dict[str, torch.Tensor], what: str, path: Path) -> None:
    own = target.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    mismatched = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or mismatched:
        detail = (
            f"shape of {mismatched[0]} is {tuple(weights[mismatched[0]].shape)} there, "
            f"{tuple(own[mismatched[0]].shape)} here"
            if mismatched
            else f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
        )
        raise HandOverError(
            f"the {what} in {path} has another architecture ({detail}); "
            "use the model settings (model.generator / model.discriminator) it was trained with"
        )
    target.load_state_dict(weights)


def init_from_checkpoint(
    module: nn.Module,
    path: str | Path,
    mapping: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, int]:
    """Copy weights from an earlier phase's checkpoint into ``module``.

    Args:
        module: the new phase module.
        path: a Lightning ``.ckpt`` of an earlier phase.
        mapping: source prefix -> attributes of ``module`` that receive it. Default:
            ``generator.`` -> ``generator``, ``discriminator.`` -> ``discriminator``; a module
            with a ``preliminary_generator`` gets the source's ``preliminary_generator.``
            weights when it has them (a refinement checkpoint), else its ``generator.`` ones.

    Returns:
        Tensors copied per receiving attribute.
    """
    path = Path(path).expanduser()
    state = read_state_dict(path)
    if mapping is None:
        mapping = {"generator.": ("generator",), "discriminator.": ("discriminator",)}
        if hasattr(module, "preliminary_generator"):
            # from generating: its generator is the preliminary one too; from refinement: keep
            # that checkpoint's own frozen preliminary generator
            if any(k.startswith("preliminary_generator.") for k in state):
                mapping["preliminary_generator."] = ("preliminary_generator",)
            else:
                mapping["generator."] = ("generator", "preliminary_generator")
    copied: dict[str, int] = {}
    for prefix, attributes in mapping.items():
        weights = extract_prefix(state, prefix)
        if not weights:
            raise HandOverError(f"{path} holds no '{prefix}' weights; is it a PI-REC checkpoint?")
        for attribute in attributes:
            _load(getattr(module, attribute), weights, attribute, path)
            copied[attribute] = len(weights)
    return copied
