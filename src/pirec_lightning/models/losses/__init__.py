"""PI-REC losses: adversarial, L1 reconstruction, and VGG perceptual and style (VGG19 or VGG16)."""

from pirec_lightning.models.losses.adversarial import AdversarialLoss
from pirec_lightning.models.losses.perceptual import (
    PerceptualLoss,
    StyleLoss,
    VGG16Features,
    VGG19Features,
    build_vgg,
    gram_matrix,
    vgg_name,
)
from pirec_lightning.models.losses.reconstruction import ReconstructionLoss, l1_loss
from pirec_lightning.models.losses.weights import VGGWeightsUnavailable, resolve_vgg19_weights

__all__ = [
    "AdversarialLoss",
    "PerceptualLoss",
    "ReconstructionLoss",
    "StyleLoss",
    "VGG16Features",
    "VGG19Features",
    "VGGWeightsUnavailable",
    "build_vgg",
    "gram_matrix",
    "l1_loss",
    "resolve_vgg19_weights",
    "vgg_name",
]
