"""Weights that ship inside the package, as safetensors (no pickle), each with a model card.

A bundled model is ``<name>.safetensors`` (the tensors of a refinement checkpoint: both stages'
generators and the discriminator, in fp16) whose metadata holds what rebuilds it (the phase, the
model and data settings), next to ``<name>.json`` (its card: data, command, commit, steps, wall
time, hardware, quality). :func:`read_pretrained` gives it back in the shape of a Lightning
checkpoint, so everything that takes a checkpoint takes a bundled model too:

>>> from pirec_lightning.pretrained import list_models
>>> list_models()  # doctest: +SKIP
['sketch-128']
>>> print(model_summary("sketch-128"))  # doctest: +SKIP
For line art: drawn lines with flat colours, at 128 px (...). Not for photos: ...

``Reconstructor.pretrained("sketch-128")``, ``pirec reconstruct --model sketch-128`` and
``init_from=pretrained:sketch-128`` all read it through :func:`read_pretrained`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pirec_lightning.checkpoints import model_state, read_checkpoint
from pirec_lightning.errors import CheckpointError

__all__ = [
    "DEFAULT_MODEL",
    "EXAMPLES_DIR",
    "PREFIX",
    "list_models",
    "model_card",
    "model_file",
    "model_summary",
    "read_pretrained",
    "write_pretrained",
]

#: the model ``Reconstructor.pretrained()`` and ``pirec app`` use when none is named
DEFAULT_MODEL = "sketch-128"
#: ``init_from=pretrained:<name>`` starts a phase from a bundled model
PREFIX = "pretrained:"
#: where the bundled files live (package data)
MODELS_DIR = Path(__file__).resolve().parent
#: line-art example pairs shipped with the bundled model (``N_e.png`` / ``N_c.png``)
EXAMPLES_DIR = MODELS_DIR / "examples"
#: metadata keys of the safetensors file holding JSON
_META = ("pirec_phase", "hyper_parameters", "datamodule_hyper_parameters")
#: the parts of a refinement checkpoint a bundled model keeps (``preliminary_discriminator.``:
#: the generating phase's discriminator, which ``scripts/gpu_round.py`` adds so that a continued
#: generating phase starts from its own; ``init_from`` hands it to imitation and generating)
KEPT_PREFIXES = (
    "generator.",
    "preliminary_generator.",
    "discriminator.",
    "preliminary_discriminator.",
)


@overload
def list_models(details: Literal[False] = False) -> list[str]: ...
@overload
def list_models(details: Literal[True]) -> dict[str, str]: ...
def list_models(details: bool = False) -> list[str] | dict[str, str]:
    """Names of the bundled models (sorted); ``details=True``: ``{name: summary}`` (each card's
    :func:`model_summary`: what the model is for and what it is not for)."""
    names = sorted(path.stem for path in MODELS_DIR.glob("*.safetensors"))
    return {name: model_summary(name) for name in names} if details else names


def model_file(name: str | None = None) -> Path:
    """The safetensors file of bundled model ``name`` (default :data:`DEFAULT_MODEL`).

    Raises:
        CheckpointError: no such model; the message lists the bundled ones.
    """
    name = DEFAULT_MODEL if name is None else name.removeprefix(PREFIX)
    path = MODELS_DIR / f"{name}.safetensors"
    if not path.is_file():
        known = ", ".join(list_models()) or "none (this install has no bundled weights)"
        raise CheckpointError(f"unknown pretrained model {name!r}; bundled: {known}")
    return path


def model_card(name: str | None = None) -> dict[str, Any]:
    """The card of bundled model ``name`` (``<name>.json``), or ``{}`` when it has none."""
    card = model_file(name).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def model_summary(name: str | None = None) -> str:
    """The summary of bundled model ``name``'s card: what it is for and what it is not for
    (shown by ``pirec app``, ``--model``'s help and ``list_models(details=True)``); empty
    when its card has none.

    Raises:
        CheckpointError: no such model; the message lists the bundled ones.
    """
    return str(model_card(name).get("summary") or "")


def read_pretrained(name: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """Bundled model ``name`` (or the safetensors file at ``path``) as a checkpoint dict:
    ``state_dict`` (float32 tensors), ``pirec_phase``, ``hyper_parameters`` and
    ``datamodule_hyper_parameters``.

    Raises:
        CheckpointError: unknown name, or a file that is not one of ours.
    """
    file = Path(path) if path is not None else model_file(name)
    try:
        state = load_file(str(file))
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{file} is not a readable safetensors file ({error})") from None
    missing = [key for key in _META if key not in metadata]
    if missing:
        raise CheckpointError(
            f"{file} has no {missing[0]!r} in its metadata: not a pirec-lightning model"
        )
    checkpoint: dict[str, Any] = {k: json.loads(metadata[k]) for k in _META}
    checkpoint["state_dict"] = {k: v.float() for k, v in state.items()}
    return checkpoint


def write_pretrained(
    checkpoint: str | Path,
    output: str | Path,
    dtype: torch.dtype = torch.float16,
    keep: Sequence[str] = KEPT_PREFIXES,
) -> dict[str, Any]:
    """Write a refinement (or generating) checkpoint as a bundled model: the tensors under
    ``keep`` in ``dtype``, the rebuilding settings as metadata.

    Returns:
        ``{"file", "tensors", "parameters", "bytes"}`` of what was written.
    """
    source = read_checkpoint(checkpoint, "checkpoint")
    state = model_state(source, checkpoint)
    kept = {
        k: v.detach().to(dtype).contiguous()
        for k, v in state.items()
        if k.startswith(tuple(keep)) and v.is_floating_point()
    }
    metadata = {k: json.dumps(_plain(source.get(k)), sort_keys=True) for k in _META}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file(kept, str(output), metadata=metadata)
    return {
        "file": str(output),
        "tensors": len(kept),
        "parameters": sum(v.numel() for v in kept.values()),
        "bytes": output.stat().st_size,
    }


def _plain(value: Any) -> Any:
    """Hyperparameters as JSON: mappings and sequences kept, anything else as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
