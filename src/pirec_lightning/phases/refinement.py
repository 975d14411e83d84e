"""Refinement: edge + the frozen generating output -> ground truth, from the generating weights."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from pirec_lightning.phases.base import PhaseModule, _metrics


class RefinementPhase(PhaseModule):
    """PI-REC's third phase. ``preliminary_generator`` (the generating generator, frozen: eval
    mode, no gradients, in no optimizer, so outside DDP's gradient sync) paints a preliminary
    image from color domain + edge; ``generator`` (trainable, initialized from the same weights)
    refines it into the final image. The checkpoint carries both, so it alone runs the two-stage
    reconstruction.

    Batch keys used: ``image``, ``edge`` and ``color_domain``. Validation also reports the
    preliminary image's metrics (``val/psnr_preliminary``...).
    """

    name = "refinement"
    required_inputs = ("edge", "color_domain")
    grid_columns = ("edge", "color domain", "preliminary", "output", "ground truth")

    def configure_networks(self) -> None:
        super().configure_networks()
        self.preliminary_generator: nn.Module = copy.deepcopy(self.generator)
        self.preliminary_generator.requires_grad_(False)
        self.preliminary_generator.eval()
        self.val_preliminary_metrics = _metrics("val/")

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

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_preliminary_metrics.update(
            self.preliminary(batch).float().clamp(0, 1).contiguous(),
            batch["image"].float().contiguous(),
        )
        super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        preliminary = self.val_preliminary_metrics.compute()
        self.log_dict({f"{k}_preliminary": v for k, v in preliminary.items()}, sync_dist=True)
        self.val_preliminary_metrics.reset()
        super().on_validation_epoch_end()
