"""GAN losses on discriminator logits, behind one small interface."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAN_TYPES = ("lsgan", "nsgan", "hinge")


def check_gan_type(gan_type: object) -> None:
    """``loss.gan_type`` in :data:`GAN_TYPES`.

    Raises:
        ValueError: one line naming the key and the valid values.
    """
    if gan_type not in GAN_TYPES:
        raise ValueError(f"loss.gan_type must be one of {', '.join(GAN_TYPES)}, got {gan_type!r}")


class AdversarialLoss(nn.Module):
    """Adversarial loss of PI-REC / EdgeConnect, computed from logits.

    ``gan_type``:

    - ``"lsgan"``: mean squared error of the logits to 1 (real) or 0 (fake).
    - ``"nsgan"``: binary cross-entropy with logits against 1 or 0 (non-saturating GAN).
    - ``"hinge"``: discriminator ``mean(relu(1 - real))`` and ``mean(relu(1 + fake))`` as two
      calls; generator ``-mean(fake)``, whatever ``is_real`` says.

    For ``lsgan`` and ``nsgan`` the generator's loss is ``loss(fake_logits, is_real=True)``;
    ``for_discriminator`` only changes ``hinge``.

    >>> loss = AdversarialLoss("hinge")
    >>> loss(torch.tensor([0.5, -2.0]), is_real=True)
    tensor(1.7500)
    """

    def __init__(self, gan_type: str = "lsgan") -> None:
        super().__init__()
        check_gan_type(gan_type)
        self.gan_type = gan_type

    def forward(
        self, logits: torch.Tensor, is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        """Loss of ``logits`` (any shape, unbounded) against the real or fake label -> scalar."""
        if self.gan_type == "hinge":
            if not for_discriminator:
                return -logits.mean()
            return F.relu(1 - logits).mean() if is_real else F.relu(1 + logits).mean()
        target = torch.full_like(logits, 1.0 if is_real else 0.0)
        if self.gan_type == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    def extra_repr(self) -> str:
        return f"gan_type={self.gan_type!r}"
