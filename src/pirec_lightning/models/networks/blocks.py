"""Building blocks shared by the PI-REC generator and discriminator.

The names and layer orders follow EdgeConnect's ``networks.py`` (which PI-REC reuses), so that the
``state_dict`` keys of the modules built here equal those of the original checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


class ResnetBlock(nn.Module):
    """Residual block with a dilated first convolution (EdgeConnect's ``ResnetBlock``).

    ``forward(x) = x + conv_block(x)`` with no activation after the sum.

    Args:
        channels: number of input and output channels ``C``.
        dilation: dilation of the first 3x3 convolution (PI-REC uses 2).

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.

    >>> ResnetBlock(8)(torch.rand(1, 8, 16, 16)).shape
    torch.Size([1, 8, 16, 16])
    """

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        # Indices 1 and 5 hold the convolutions: keys conv_block.1.* and conv_block.5.*.
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(channels, channels, kernel_size=3, dilation=dilation),
            nn.InstanceNorm2d(channels, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, dilation=1),
            nn.InstanceNorm2d(channels, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        return x + self.conv_block(x)


def init_weights(module: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise every convolution and linear layer of ``module`` in place (EdgeConnect style).

    Weights are drawn by ``init_type`` (``normal``: N(0, gain); ``xavier``: Xavier-normal with
    ``gain``; ``kaiming``: Kaiming-normal, fan-in; ``orthogonal``: orthogonal with ``gain``);
    biases are set to zero. For a spectrally normalised layer the raw ``weight_orig`` is
    initialised, so the initialisation is not overwritten by the next forward pass.

    Returns:
        ``module``, for chaining.

    Raises:
        ValueError: if ``init_type`` is unknown.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(
            f"unknown init_type {init_type!r}; expected one of {', '.join(INIT_TYPES)}"
        )

    def init_layer(layer: nn.Module) -> None:
        if not isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
            return
        weight = getattr(layer, "weight_orig", None)
        if weight is None:
            weight = layer.weight
        with torch.no_grad():
            if init_type == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    module.apply(init_layer)
    return module
