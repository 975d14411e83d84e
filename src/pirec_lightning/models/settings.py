"""The checks of the ``model.*`` and ``loss.*`` keys, owned here and called once by
:func:`pirec_lightning.config.validate_config` before any work starts. The accepted values are
imported from the modules that use them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pirec_lightning.models.backbones import FETCH_HINT, backbone_path
from pirec_lightning.models.losses.adversarial import check_gan_type
from pirec_lightning.models.losses.perceptual import check_vgg_settings
from pirec_lightning.models.networks.compile import check_compile_mode

__all__ = ["check_ema_decay", "check_loss_settings", "check_model_settings"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_ema_decay(decay: Any) -> float | None:
    """``model.ema_decay``: a number in (0, 1), or None (no EMA).

    Raises:
        ValueError: one line naming the key.
    """
    if decay is not None and not (_is_number(decay) and 0 < decay < 1):
        raise ValueError(f"model.ema_decay must be a number in (0, 1) or null (off), got {decay!r}")
    return None if decay is None else float(decay)


def check_model_settings(model: Mapping[str, Any]) -> None:
    """``model.*``: optimizer, network sizes, EMA and compile settings.

    Raises:
        ValueError: one line naming the key, the bad value and what to use instead.
    """
    lr = (model.get("optimizer") or {}).get("lr")
    if not (_is_number(lr) and lr > 0):
        raise ValueError(f"model.optimizer.lr must be a positive number, got {lr!r}")
    for net in ("generator", "discriminator"):
        base = (model.get(net) or {}).get("base_channels")
        if not (_is_int(base) and base > 0):
            raise ValueError(f"model.{net}.base_channels must be a positive integer, got {base!r}")
    check_ema_decay(model.get("ema_decay"))
    blocks = (model.get("generator") or {}).get("res_blocks")
    if not (_is_int(blocks) and blocks >= 0):
        raise ValueError(
            f"model.generator.res_blocks must be a non-negative integer, got {blocks!r}"
        )
    check_compile_mode(model.get("compile_mode"))


def check_loss_settings(loss: Mapping[str, Any]) -> None:
    """``loss.*``: the VGG mode and input, the GAN type, non-negative weights, a weights file
    that exists when one is given, and the converted VGG16 when ``loss.vgg=vgg16`` needs it.

    Raises:
        ValueError: one line naming the key, the bad value and what to use instead.
    """
    mode = "off" if loss.get("vgg") is False else loss.get("vgg")
    check_vgg_settings(mode, loss.get("vgg_input", "auto"))
    check_gan_type(loss.get("gan_type"))
    for key in ("l1", "adversarial", "perceptual", "style"):
        value = loss.get(key)
        if not (_is_number(value) and value >= 0):
            raise ValueError(f"loss.{key} must be a non-negative number, got {value!r}")
    weights = loss.get("vgg_weights")
    if weights is not None and not Path(str(weights)).expanduser().is_file():
        raise ValueError(
            f"loss.vgg_weights file does not exist: {weights}; give the path of "
            "vgg19-dcbb9e9d.pth or set loss.vgg=off"
        )
    wants = any(_is_number(loss.get(k)) and loss[k] > 0 for k in ("perceptual", "style"))
    if mode == "vgg16" and wants and backbone_path("vgg16") is None:
        raise ValueError(
            "loss.vgg=vgg16 needs ImageNet VGG16 weights, which are not on this machine: "
            f"{FETCH_HINT}; or set loss.vgg=off"
        )
