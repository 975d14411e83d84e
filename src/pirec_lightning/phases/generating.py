"""Generating: edge + color domain -> ground truth, starting from the imitation weights."""

from __future__ import annotations

from torch import Tensor

from pirec_lightning.phases.base import PhaseModule


class GeneratingPhase(PhaseModule):
    """PI-REC's second phase: the generator learns to paint from the color domain (made under
    hyperparameter confusion) and the edge (with pixel dropout).

    Batch keys used: ``image`` (B, 3, H, W) in [0, 1], ``edge`` (B, 1, H, W) in {0, 1} and
    ``color_domain`` (B, 3, H, W) in [0, 1]. The color domain is also the validation baseline
    (``val/psnr_baseline``...).
    """

    name = "generating"
    required_inputs = ("edge", "color_domain")
    grid_columns = ("edge", "color domain", "output", "ground truth")

    def generator_input(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["color_domain"]
