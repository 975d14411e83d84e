"""PI-REC losses: adversarial, L1 reconstruction, and VGG19 perceptual and style."""

from pirec_lightning.models.losses.adversarial import AdversarialLoss
from pirec_lightning.models.losses.perceptual import (
    PerceptualLoss,
    StyleLoss,
    VGG19Features,
    build_vgg,
    gram_matrix,
)
from pirec_lightning.models.losses.reconstruction import ReconstructionLoss, l1_loss
from pirec_lightning.models.losses.weights import VGGWeightsUnavailable, resolve_vgg19_weights

__all__ = [
    "AdversarialLoss",
    "PerceptualLoss",
    "ReconstructionLoss",
    "StyleLoss",
    "VGG19Features",
    "VGGWeightsUnavailable",
    "build_vgg",
    "gram_matrix",
    "l1_loss",
    "resolve_vgg19_weights",
]
