"""Imitation: edge + masked ground truth -> ground truth. Initializes the networks."""

from __future__ import annotations

from torch import Tensor

from pirec_lightning.phases.base import PhaseModule


class ImitationPhase(PhaseModule):
    """PI-REC's first phase. The generator sees the ground truth with free-form brush-stroke holes
    painted white, plus the edge map, and learns to give back the whole image.

    Batch keys used: ``image`` (B, 3, H, W) in [0, 1], ``edge`` (B, 1, H, W) in {0, 1} and
    ``mask`` (B, 1, H, W) in {0, 1} with 1 = hole.
    """

    name = "imitation"
    required_inputs = ("edge", "mask")
    grid_columns = ("edge", "masked input", "output", "ground truth")

    def generator_input(self, batch: dict[str, Tensor]) -> Tensor:
        mask = batch["mask"]
        return batch["image"] * (1 - mask) + mask
