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

    # EdgeConnect's InpaintingModel (PI-REC's imitation code): the L1 over the whole image is
    # divided by the hole fraction, so it weighs like an L1 over the holes, and the style term
    # compares the holes only.
    def l1_term(self, output: Tensor, target: Tensor, batch: dict[str, Tensor] | None) -> Tensor:
        l1 = super().l1_term(output, target, batch)
        if batch is None:
            return l1
        return l1 / batch["mask"].mean().clamp_min(1e-3)

    def style_images(
        self, output: Tensor, target: Tensor, batch: dict[str, Tensor] | None
    ) -> tuple[Tensor, Tensor] | None:
        if batch is None:
            return None
        mask = batch["mask"]
        return output * mask, target * mask
