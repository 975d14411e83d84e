"""``model.compile``: ``torch.compile`` of the generator and the discriminator, in place.

``nn.Module.compile`` compiles a module's ``forward`` without wrapping it, so parameter names,
checkpoints and the weight hand-over between phases (``generator.`` / ``discriminator.``) are
unchanged. The discriminator's spectral norm (``torch.nn.utils.spectral_norm``: a forward
pre-hook that runs one power iteration and updates the ``weight_u`` / ``weight_v`` buffers in
place) compiles into the same graph with no graph break: dynamo inlines the hook and keeps the
buffer updates (``tests/models/test_compile.py`` checks both). ``model.compile_mode`` is passed
to ``torch.compile``: ``reduce-overhead`` adds CUDA graphs (static shapes: keep
``drop_last``), ``max-autotune`` searches kernels; null is the default mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: str | None) -> str | None:
    """Return ``mode`` if ``torch.compile`` knows it (or it is null), else one clear ValueError."""
    if mode not in COMPILE_MODES:
        names = ", ".join("null" if m is None else m for m in COMPILE_MODES)
        raise ValueError(f"model.compile_mode must be one of {names}, got {mode!r}")
    return mode


def compile_networks(networks: list[nn.Module], model: Mapping[str, Any]) -> bool:
    """Compile each of ``networks`` in place when ``model["compile"]`` is true.

    Args:
        networks: modules whose ``forward`` is compiled (``nn.Module.compile``).
        model: the ``model`` config: ``compile`` (bool, default false) and ``compile_mode``.

    Returns:
        Whether anything was compiled.
    """
    mode = check_compile_mode(model.get("compile_mode"))
    if not model.get("compile", False):
        return False
    for network in networks:
        network.compile(mode=mode)
    return True
