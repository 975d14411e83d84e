"""The PI-REC discriminator: EdgeConnect's 70x70 PatchGAN with spectral normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from pirec_lightning.models.networks.blocks import init_weights


@torch.library.custom_op("pirec::snapshot", mutates_args=())
def snapshot(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` that ``torch.compile`` can neither drop nor recompute later."""
    return x.clone()


@snapshot.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class _SpectralNorm(SpectralNorm):
    """``torch.nn.utils.spectral_norm``'s hook, safe under ``torch.compile``.

    The power iteration updates the ``weight_u`` / ``weight_v`` buffers in place and autograd
    gets clones of them. Compiled, the clones vanish and the backward may recompute from the
    buffers after their update: wrong weight gradients, or a version error when the
    discriminator runs twice (real, fake) before one backward. :func:`snapshot` keeps the copies.
    """

    def compute_weight(self, module: nn.Module, do_power_iteration: bool) -> torch.Tensor:
        if not do_power_iteration:  # nothing is updated in place
            return super().compute_weight(module, do_power_iteration)
        weight = getattr(module, self.name + "_orig")
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        weight_mat = self.reshape_weight_to_matrix(weight)
        with torch.no_grad():
            for _ in range(self.n_power_iterations):
                F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=self.eps, out=v)
                F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps, out=u)
            u, v = snapshot(u), snapshot(v)
        return weight / torch.dot(u, torch.mv(weight_mat, v))


def spectral_norm(conv: nn.Conv2d) -> nn.Conv2d:
    """``torch.nn.utils.spectral_norm(conv)`` (same buffers and state dict) with the hook of
    :class:`_SpectralNorm`."""
    nn.utils.spectral_norm(conv)
    for hook in conv._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            hook.__class__ = _SpectralNorm
    return conv


class Discriminator(nn.Module):
    """70x70 PatchGAN returning logits and the activations of every stage.

    Five 4x4 convolutions (padding 1, strides 2, 2, 2, 1, 1; widths ``b, 2b, 4b, 8b, 1``), each
    but the last followed by LeakyReLU(0.2). With ``use_spectral_norm`` every convolution is
    spectrally normalised and has no bias (the layout of EdgeConnect / PI-REC). No sigmoid: the
    losses in :mod:`pirec_lightning.models.losses` take logits.

    Args:
        in_channels: channels of the judged image (3 for RGB).
        base_channels: width ``b`` of the first convolution.
        use_spectral_norm: wrap every convolution in ``torch.nn.utils.spectral_norm``.

    Shape:
        ``forward``: ``(B, in_channels, H, W)`` -> ``(logits, features)`` with logits
        ``(B, 1, H/8 - 2, W/8 - 2)`` (for ``H``, ``W`` divisible by 8) and ``features`` the five
        stage outputs ``conv1 .. conv5`` (``conv5`` is the logits).

    >>> logits, features = Discriminator(base_channels=8)(torch.rand(2, 3, 64, 64))
    >>> logits.shape, len(features)
    (torch.Size([2, 1, 6, 6]), 5)
    """

    def __init__(
        self, in_channels: int = 3, base_channels: int = 64, use_spectral_norm: bool = True
    ) -> None:
        super().__init__()
        b = base_channels
        widths = [in_channels, b, 2 * b, 4 * b, 8 * b, 1]
        strides = [2, 2, 2, 1, 1]
        convs = [
            nn.Conv2d(c_in, c_out, 4, stride=s, padding=1, bias=not use_spectral_norm)
            for c_in, c_out, s in zip(widths[:-1], widths[1:], strides)
        ]
        # Initialise before spectral_norm so its power iteration starts from the final weights.
        for conv in convs:
            init_weights(conv)
        if use_spectral_norm:
            convs = [spectral_norm(conv) for conv in convs]
        # Stages are Sequentials named conv1..conv5: keys conv1.0.weight_orig, ... as in EdgeConnect.
        self.conv1 = nn.Sequential(convs[0], nn.LeakyReLU(0.2))
        self.conv2 = nn.Sequential(convs[1], nn.LeakyReLU(0.2))
        self.conv3 = nn.Sequential(convs[2], nn.LeakyReLU(0.2))
        self.conv4 = nn.Sequential(convs[3], nn.LeakyReLU(0.2))
        self.conv5 = nn.Sequential(convs[4])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Judge ``x``.

        Args:
            x: ``(B, in_channels, H, W)``, images in ``[0, 1]``.

        Returns:
            ``(logits, [conv1, conv2, conv3, conv4, conv5])``; logits ``(B, 1, h, w)``, unbounded.
        """
        features = []
        for stage in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = stage(x)
            features.append(x)
        return x, features
