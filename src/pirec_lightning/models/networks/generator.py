"""The PI-REC generator: EdgeConnect's ``InpaintGenerator`` with a resize-convolution decoder."""

from __future__ import annotations

import torch
from torch import nn

from pirec_lightning.models.networks.blocks import ResnetBlock, init_weights


class Generator(nn.Module):
    """Encoder, dilated residual middle and decoder mapping an edge + colour input to an image.

    The ``state_dict`` keys and shapes equal those of the original PI-REC generator (with the
    defaults: 44 tensors, 10,545,219 parameters), so its ``G_Model_gen_*.pth`` /
    ``R_Model_gen_*.pth`` weights load unchanged.

    Args:
        in_channels: input channels; PI-REC feeds the RGB colour domain (or image) first, then
            the edge map: 3 + 1 = 4.
        out_channels: output channels (3 for RGB).
        base_channels: width ``b`` of the first layer; the encoder runs at ``b, 2b, 4b``.
        res_blocks: number of dilated residual blocks in the middle.

    Shape:
        ``forward``: ``(B, in_channels, H, W)`` with ``H`` and ``W`` divisible by 4
        -> ``(B, out_channels, H, W)`` in ``[0, 1]``.

    >>> Generator(base_channels=8, res_blocks=1)(torch.rand(2, 4, 32, 32)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        base_channels: int = 64,
        res_blocks: int = 8,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        b = base_channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, b, kernel_size=7),
            nn.InstanceNorm2d(b, track_running_stats=False),
            nn.ReLU(True),
            nn.Conv2d(b, 2 * b, kernel_size=4, stride=2, padding=1),
            nn.InstanceNorm2d(2 * b, track_running_stats=False),
            nn.ReLU(True),
            nn.Conv2d(2 * b, 4 * b, kernel_size=4, stride=2, padding=1),
            nn.InstanceNorm2d(4 * b, track_running_stats=False),
            nn.ReLU(True),
        )
        # One block per position (not one block repeated): the original has separate weights.
        self.middle = nn.Sequential(*(ResnetBlock(4 * b, dilation=2) for _ in range(res_blocks)))
        self.decoder = nn.Sequential(
            # PI-REC replaces EdgeConnect's first transposed convolution by a resize-convolution.
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReflectionPad2d(1),
            nn.Conv2d(4 * b, 2 * b, kernel_size=3),
            nn.InstanceNorm2d(2 * b, track_running_stats=False),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * b, b, kernel_size=4, stride=2, padding=1),
            nn.InstanceNorm2d(b, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(b, out_channels, kernel_size=7),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct an image.

        Args:
            x: ``(B, in_channels, H, W)``, RGB channels first, then the edge; ``H`` and ``W``
                divisible by 4.

        Returns:
            ``(B, out_channels, H, W)`` in ``[0, 1]``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Generator expects (B, {self.in_channels}, H, W), got {list(x.shape)}"
            )
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(
                f"Generator needs H and W divisible by 4, got {x.shape[-2]}x{x.shape[-1]}"
            )
        y = self.decoder(self.middle(self.encoder(x)))
        return (torch.tanh(y) + 1) / 2
