"""Refinement: edge + the frozen generating output -> ground truth, from the generating weights."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from pirec_lightning.models.networks.residual import add_correction
from pirec_lightning.phases.base import PhaseModule


class RefinementPhase(PhaseModule):
    """PI-REC's third phase. ``preliminary_generator`` (the generating generator, frozen: eval
    mode, no gradients, in no optimizer, so outside DDP's gradient sync) paints a preliminary
    image from color domain + edge; ``generator`` (trainable, initialized from the same weights)
    refines it into the final image. The checkpoint carries both, so it alone runs the two-stage
    reconstruction.

    Batch keys used: ``image``, ``edge`` and ``color_domain``. Validation also reports the
    preliminary image's metrics (``val/psnr_preliminary``...).

    With ``residual=True`` (phase option ``phase.module.residual``) the generator paints a
    correction instead of the image: ``final = clamp(preliminary + 2 * generator(x) - 1, 0, 1)``,
    and when the phase starts from a generating checkpoint the generator's last convolution is
    zeroed, so the refinement starts as the identity (stage 2 = stage 1) and training can only
    move it where the losses say it improves. PI-REC's own refinement (``residual=False``) must
    first learn to repaint its input through the instance-normalized encoder.
    """

    name = "refinement"
    required_inputs = ("edge", "color_domain")
    grid_columns = ("edge", "color domain", "preliminary", "output", "ground truth")
    val_reports = ("output", "baseline", "preliminary")

    def configure_networks(self) -> None:
        super().configure_networks()
        self.preliminary_generator: nn.Module = copy.deepcopy(self.generator)
        self.preliminary_generator.requires_grad_(False)
        self.preliminary_generator.eval()

    @property
    def residual(self) -> bool:
        return bool(self.hparams.get("residual", False))

    def forward(self, image: Tensor, edge: Tensor) -> Tensor:
        output = super().forward(image, edge)
        return add_correction(image, output) if self.residual else output

    def after_init_from(self, source_phase: str | None) -> None:
        """Start a residual refinement from a generating checkpoint as the identity."""
        if self.residual and source_phase == "generating":
            last = [m for m in self.generator.modules() if isinstance(m, nn.Conv2d)][-1]
            with torch.no_grad():
                last.weight.zero_()
                if last.bias is not None:
                    last.bias.zero_()

    def train(self, mode: bool = True) -> RefinementPhase:
        super().train(mode)
        self.preliminary_generator.eval()  # stays frozen whatever the trainer asks
        return self

    @torch.no_grad()
    def preliminary(self, batch: dict[str, Tensor]) -> Tensor:
        """The frozen generating output (B, 3, H, W) in [0, 1], computed once per batch."""
        if "preliminary" not in batch:
            inputs = torch.cat([batch["color_domain"], batch["edge"]], dim=1)
            batch["preliminary"] = self.preliminary_generator(inputs).detach()
        return batch["preliminary"]

    def generator_input(self, batch: dict[str, Tensor]) -> Tensor:
        return self.preliminary(batch)

    def baseline(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["color_domain"]

    def grid_tensors(self, batch: dict[str, Tensor], output: Tensor) -> list[Tensor]:
        return [
            batch["edge"],
            batch["color_domain"],
            self.preliminary(batch),
            output,
            batch["image"],
        ]

    def val_images(self, batch: dict[str, Tensor], output: Tensor) -> dict[str, Tensor]:
        return {**super().val_images(batch, output), "preliminary": self.preliminary(batch)}
