"""Pixel reconstruction loss."""

from __future__ import annotations

import torch
from torch import nn


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between two tensors of the same shape -> scalar.

    >>> l1_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.0]))
    tensor(0.7500)
    """
    if output.shape != target.shape:
        raise ValueError(
            f"l1_loss needs equal shapes, got {tuple(output.shape)} and {tuple(target.shape)}"
        )
    return (output - target).abs().mean()


class ReconstructionLoss(nn.Module):
    """Module form of :func:`l1_loss`: ``(B, C, H, W), (B, C, H, W) -> scalar``."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l1_loss(output, target)
