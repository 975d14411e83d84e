"""VGG perceptual and style losses (EdgeConnect's ``PerceptualLoss`` and ``StyleLoss``).

PI-REC computes them on ImageNet VGG19 (:class:`VGG19Features`, torchvision's file). Where that
file cannot be had, :class:`VGG16Features` gives the same terms on ImageNet VGG16, converted on
the user's machine by ``pirec weights fetch``, each VGG19 layer mapped to its VGG16 counterpart
(:data:`VGG16_FOR_VGG19`; a documented deviation from the paper, docs/training.md).

One frozen feature extractor is shared by both losses; compute its features once per batch
and hand them to ``from_features`` to avoid running VGG twice::

    vgg, reason = build_vgg("vgg16")
    perceptual, style = PerceptualLoss(vgg), StyleLoss(vgg)
    fx, fy = vgg(output), vgg(target)
    loss = perceptual.from_features(fx, fy) + 250 * style.from_features(fx, fy)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from pirec_lightning.checkpoints import read_checkpoint
from pirec_lightning.models.backbones import load_features
from pirec_lightning.models.losses.weights import VGGWeightsUnavailable, resolve_vgg19_weights

log = logging.getLogger(__name__)

# Index of each ReLU in torchvision's vgg19().features.
VGG19_RELUS = {
    1: "relu1_1",
    6: "relu2_1",
    8: "relu2_2",
    11: "relu3_1",
    17: "relu3_4",
    20: "relu4_1",
    26: "relu4_4",
    29: "relu5_1",
    31: "relu5_2",
}
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")
#: PI-REC's VGG19 layers -> the VGG16 layers that stand in for them: the same ReLUs where VGG16
#: has them; the last ReLU of blocks 3 and 4 (VGG19's relu3_4 / relu4_4 are VGG16's relu3_3 /
#: relu4_3, the fourth convolution of those blocks being VGG19's only)
VGG16_FOR_VGG19 = {
    "relu1_1": "relu1_1",
    "relu2_1": "relu2_1",
    "relu2_2": "relu2_2",
    "relu3_1": "relu3_1",
    "relu3_4": "relu3_3",
    "relu4_1": "relu4_1",
    "relu4_4": "relu4_3",
    "relu5_1": "relu5_1",
    "relu5_2": "relu5_2",
}
# Index of each ReLU in torchvision's vgg16().features.
VGG16_RELUS = {
    1: "relu1_1",
    6: "relu2_1",
    8: "relu2_2",
    11: "relu3_1",
    15: "relu3_3",
    18: "relu4_1",
    22: "relu4_3",
    25: "relu5_1",
    27: "relu5_2",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``loss.vgg``: ``vgg16`` (converted by ``pirec weights fetch``), ``vgg19`` (torchvision's file;
#: ``imagenet`` is its older name), ``auto`` (VGG19, else VGG16, else none, with a warning), ``off``
VGG_MODES = ("auto", "vgg16", "vgg19", "imagenet", "off")
#: what the VGG sees: ``raw`` [0, 1] images (EdgeConnect's and PI-REC's loss code, for which the
#: weights 0.1 / 250 were tuned), ``imagenet`` mean/std-normalized ones (torchvision's habit), or
#: ``auto``: ``imagenet`` for VGG16, ``raw`` for VGG19
VGG_INPUTS = ("auto", "raw", "imagenet")


def check_vgg_settings(mode: object = "auto", vgg_input: object = "auto") -> None:
    """``loss.vgg`` in :data:`VGG_MODES` and ``loss.vgg_input`` in :data:`VGG_INPUTS`.

    Raises:
        ValueError: one line naming the key and the valid values.
    """
    if mode not in VGG_MODES:
        raise ValueError(f"loss.vgg must be one of {', '.join(VGG_MODES)}, got {mode!r}")
    if vgg_input not in VGG_INPUTS:
        raise ValueError(
            f"loss.vgg_input must be one of {', '.join(VGG_INPUTS)}, got {vgg_input!r}"
        )


class VGG19Features(nn.Module):
    """Frozen ImageNet VGG19 returning the activations the perceptual and style losses use.

    The weights come from a file (see :func:`resolve_vgg19_weights`): either a full torchvision
    ``vgg19`` state dict or one holding only its ``features.*`` entries (float16 is fine), loaded
    strictly. The module stays in eval mode and without gradients for its parameters, and it
    adds nothing to its parent's ``state_dict``: the file is the source of its weights, so
    checkpoints stay small and load whether or not they were saved with a VGG.

    Args:
        weights_path: the weight file; ``None`` searches ``$PIREC_WEIGHTS_DIR`` and the torch hub
            cache and downloads if needed.
        vgg_input: ``"raw"`` feeds the [0, 1] image unchanged, as EdgeConnect's ``VGG19`` (PI-REC's
            loss code) does; ``"imagenet"`` first subtracts the ImageNet mean and divides by its
            std, which scales every activation (and so both loss terms) by roughly 1 / 0.226.

    Shape:
        ``forward``: ``(B, 3, H, W)`` in ``[0, 1]`` -> dict of the ``relu1_1, relu2_1, relu2_2,
        relu3_1, relu3_4, relu4_1, relu4_4, relu5_1, relu5_2`` activations, ``(B, C_l, H_l, W_l)``.
    """

    #: the activations the perceptual and style terms read
    perceptual_layers = PERCEPTUAL_LAYERS
    style_layers = STYLE_LAYERS
    relus = VGG19_RELUS

    def __init__(self, weights_path: str | Path | None = None, vgg_input: str = "raw") -> None:
        super().__init__()
        check_vgg_settings(vgg_input=vgg_input)
        self.vgg_input = "raw" if vgg_input == "auto" else vgg_input
        path = resolve_vgg19_weights(weights_path)
        state = read_checkpoint(path, "VGG19 weights")
        features = make_layers(cfgs["E"])
        features.load_state_dict(
            {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        )
        # Nothing after relu5_2 is needed.
        self.layers = features[: max(VGG19_RELUS) + 1]
        for layer in self.layers:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # the returned activations must not be overwritten
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_state_dict_post_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_supply_own_entries)
        super().train(False)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode whatever ``mode`` a parent passes."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``{relu name: (B, C_l, H_l, W_l)}``."""
        if self.vgg_input == "imagenet":
            x = (x - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.relus:
                out[self.relus[index]] = x
        return out


class VGG16Features(VGG19Features):
    """Frozen ImageNet VGG16 (converted by ``pirec weights fetch``) with the activations that
    stand in for PI-REC's VGG19 ones (:data:`VGG16_FOR_VGG19`): perceptual at ``relu1_1 ..
    relu5_1``, style at ``relu2_2, relu3_3, relu4_3, relu5_2``. Like :class:`VGG19Features` it
    stays in eval mode, without gradients, and out of its parent's ``state_dict``.

    Args:
        vgg_input: ``"imagenet"`` (``"auto"``: the default) or ``"raw"``, see
            :class:`VGG19Features`.

    Raises:
        VGGWeightsUnavailable: the converted file is absent (one line naming
            ``pirec weights fetch``).
    """

    perceptual_layers = tuple(VGG16_FOR_VGG19[name] for name in PERCEPTUAL_LAYERS)
    style_layers = tuple(VGG16_FOR_VGG19[name] for name in STYLE_LAYERS)
    relus = VGG16_RELUS

    def __init__(self, vgg_input: str = "auto") -> None:
        nn.Module.__init__(self)
        check_vgg_settings(vgg_input=vgg_input)
        self.vgg_input = "imagenet" if vgg_input == "auto" else vgg_input
        self.layers = load_features("vgg16")[: max(VGG16_RELUS) + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_state_dict_post_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_supply_own_entries)
        nn.Module.train(self, False)


def _drop_own_entries(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any
) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _supply_own_entries(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    # Replace whatever a checkpoint holds for the VGG by the weights already loaded from file.
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]
    for name, tensor in module.layers.state_dict(prefix=f"{prefix}layers.").items():
        state_dict[name] = tensor


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the feature size (EdgeConnect's ``compute_gram``).

    Args:
        x: features ``(B, C, H, W)``.

    Returns:
        ``(B, C, C)``: ``F F^T / (C * H * W)`` with ``F`` the ``(C, H * W)`` reshaped features.
    """
    b, c, h, w = x.shape
    # float32 with autocast off: under 16-bit mixed precision the sums over H * W positions
    # overflow float16 before the normalisation
    with torch.autocast(x.device.type, enabled=False):
        f = x.float().reshape(b, c, h * w)
        return f.bmm(f.transpose(1, 2)) / (c * h * w)


class _FeatureLoss(nn.Module):
    """A loss over :class:`VGG19Features` activations: ``forward`` runs the shared VGG on both
    images, ``from_features`` takes activations computed once for several losses."""

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.vgg(x), self.vgg(y))

    def from_features(
        self, x_features: Mapping[str, torch.Tensor], y_features: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        raise NotImplementedError


class PerceptualLoss(_FeatureLoss):
    """Weighted sum of L1 distances of VGG19 activations at ``relu1_1 .. relu5_1``.

    Args:
        vgg: the shared feature extractor.
        weights: one weight per layer of ``PERCEPTUAL_LAYERS``.

    Shape:
        ``forward``: two ``(B, 3, H, W)`` images in ``[0, 1]`` -> scalar >= 0.
    """

    def __init__(
        self, vgg: VGG19Features, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0)
    ) -> None:
        super().__init__(vgg)
        if len(weights) != len(PERCEPTUAL_LAYERS):
            raise ValueError(
                f"PerceptualLoss needs {len(PERCEPTUAL_LAYERS)} weights, got {len(weights)}"
            )
        self.weights = tuple(float(w) for w in weights)

    def from_features(
        self, x_features: Mapping[str, torch.Tensor], y_features: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """The loss from precomputed :class:`VGG19Features` outputs -> scalar."""
        return sum(
            w * F.l1_loss(x_features[name], y_features[name])
            for w, name in zip(self.weights, self.vgg.perceptual_layers)
        )


class StyleLoss(_FeatureLoss):
    """Sum of L1 distances of Gram matrices of VGG19 activations at ``relu2_2 .. relu5_2``.

    Shape:
        ``forward``: two ``(B, 3, H, W)`` images in ``[0, 1]`` -> scalar >= 0.
    """

    def from_features(
        self, x_features: Mapping[str, torch.Tensor], y_features: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """The loss from precomputed :class:`VGG19Features` outputs -> scalar."""
        return sum(
            F.l1_loss(gram_matrix(x_features[name]), gram_matrix(y_features[name]))
            for name in self.vgg.style_layers
        )


def build_vgg(
    mode: str = "auto", weights_path: str | Path | None = None, vgg_input: str = "auto"
) -> tuple[VGG19Features | None, str | None]:
    """Build the shared VGG feature extractor as the ``loss.vgg`` switch asks.

    Args:
        mode: ``"vgg16"``: the converted VGG16 must be there (else :class:`VGGWeightsUnavailable`
            naming ``pirec weights fetch``); ``"vgg19"`` (or its older name ``"imagenet"``):
            torchvision's VGG19 file must be found; ``"off"``: no VGG; ``"auto"``: VGG19, else
            VGG16, else warn loudly and go on without VGG.
        weights_path: explicit VGG19 weight file (``loss.vgg_weights``).
        vgg_input: ``loss.vgg_input``, see :class:`VGG19Features` (``auto``: ImageNet
            normalisation for VGG16, raw for VGG19).

    Returns:
        ``(vgg, None)``, or ``(None, reason)`` when perceptual and style losses are off.
    """
    check_vgg_settings(mode, vgg_input)
    if mode == "off":
        return None, "disabled by loss.vgg=off"
    if mode == "vgg16":
        return VGG16Features(vgg_input), None
    try:
        return VGG19Features(weights_path, vgg_input), None
    except VGGWeightsUnavailable as err:
        if mode in ("vgg19", "imagenet"):
            raise
        try:
            return VGG16Features(vgg_input), None
        except VGGWeightsUnavailable:
            pass
        reason = (
            "VGG19 ImageNet weights unavailable and no converted VGG16: training WITHOUT "
            f"perceptual and style losses (run `pirec weights fetch` for VGG16). {err}"
        )
        log.warning(reason)
        warnings.warn(reason, RuntimeWarning, stacklevel=2)
        return None, reason


def vgg_name(vgg: VGG19Features | None) -> str:
    """``vgg16`` | ``vgg19`` for a built extractor, ``off`` for none."""
    if vgg is None:
        return "off"
    return "vgg16" if isinstance(vgg, VGG16Features) else "vgg19"
