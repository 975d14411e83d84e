"""The base phase: networks, losses and metrics built from saved hyperparameters; manual GAN steps.

Every phase is a thin subclass that says which inputs it needs (``required_inputs``) and how a
batch becomes the generator's input (:meth:`PhaseModule.generator_input`). The attribute names
``generator`` and ``discriminator`` are shared by every phase so weights move between phases by
key prefix (``generator.`` / ``discriminator.``).

Lightning's ``global_step`` counts optimizer steps; a phase takes
``optimizer_steps_per_batch`` (2: discriminator and generator) per batch. The training entry
point converts user-facing step counts (generator steps) accordingly.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from torch import Tensor, nn

from pirec_lightning.models.losses import (
    AdversarialLoss,
    PerceptualLoss,
    StyleLoss,
    VGG19Features,
    build_vgg,
    l1_loss,
    vgg_name,
)
from pirec_lightning.models.networks.compile import compile_networks
from pirec_lightning.phases.numerics import NonFiniteGuard, fused_options
from pirec_lightning.phases.samples import log_sample_grid, sample_grid
from pirec_lightning.phases.validation import MAIN, ValidationSets

DEFAULT_LOSS = {
    "l1": 1.0,
    "adversarial": 0.1,
    "perceptual": 0.1,
    "style": 250.0,
    "gan_type": "lsgan",
    "vgg": "auto",
    "vgg_weights": None,
    "vgg_input": "auto",
}


class PhaseModule(pl.LightningModule):
    """Shared machinery of the imitation, generating and refinement phases.

    Args:
        model: the ``model`` config: ``generator`` and ``discriminator`` (``_target_`` + kwargs),
            ``optimizer`` (a ``_partial_`` optimizer) and ``d2g_lr`` (discriminator lr factor).
        loss: loss weights ``l1``, ``adversarial``, ``perceptual``, ``style``, ``gan_type``,
            the VGG switch ``vgg`` (auto | vgg16 | vgg19 | imagenet | off) with optional
            ``vgg_weights``, and ``vgg_input`` (auto | raw | imagenet: what the VGG is fed).
        num_samples: images in the validation sample grid.
        vgg_status: filled in by the module (what became of the VGG terms); logged with the
            hyperparameters.
        max_bad_steps: consecutive steps with a NaN/inf loss or gradient (each skipped for both
            networks) after which training stops with the last good weights.
    """

    name = "base"
    #: inputs the DataModule must make for this phase
    required_inputs: tuple[str, ...] = ("edge",)
    #: Lightning optimizer steps per batch (discriminator + generator)
    optimizer_steps_per_batch = 2
    #: networks that train, each wrapped in its own DDP by GANDDPStrategy
    ddp_networks: tuple[str, ...] = ("generator", "discriminator")
    #: column titles of the sample grid, left to right
    grid_columns: tuple[str, ...] = ("edge", "input", "output", "ground truth")
    #: images measured against the ground truth in validation (see ValidationSets)
    val_reports: tuple[str, ...] = ("output", "baseline")

    def __init__(
        self,
        model: dict[str, Any],
        loss: dict[str, Any] | None = None,
        num_samples: int = 8,
        vgg_status: str | None = None,
        max_bad_steps: int = 10,
        **phase_options: Any,
    ) -> None:
        super().__init__()
        loss = {**DEFAULT_LOSS, **(loss or {})}
        if loss["vgg"] is False:  # YAML reads a bare `off` as false
            loss["vgg"] = "off"
        self.save_hyperparameters({"model": model, "loss": loss, "num_samples": num_samples})
        self.save_hyperparameters(phase_options)
        self.save_hyperparameters({"max_bad_steps": max_bad_steps})
        self.numeric_guard = NonFiniteGuard(max_bad_steps)
        self.automatic_optimization = False
        self.configure_networks()
        self.adversarial_loss = AdversarialLoss(loss["gan_type"])
        # the phase's own validation set; setup() adds data.extra_val's sets and LPIPS
        self.val_sets = ValidationSets(self.val_reports)
        # VGG is built lazily (only for fitting) and kept outside the module tree: it is frozen,
        # never checkpointed, and never wrapped by DDP.
        self._vgg: list[VGG19Features | None] = []
        self._vgg_losses: dict[str, nn.Module] = {}
        self.hparams["vgg_status"] = vgg_status
        # DDP wrappers set by GANDDPStrategy; a plain dict keeps them out of the checkpoint keys
        self._ddp_wrappers: dict[str, nn.Module] = {}

    # ------------------------------------------------------------------------------- building
    def configure_networks(self) -> None:
        """Build ``generator`` and ``discriminator`` from the saved ``model`` config."""
        self.generator: nn.Module = instantiate(self.hparams.model["generator"])
        self.discriminator: nn.Module = instantiate(self.hparams.model["discriminator"])
        compile_networks([self.generator, self.discriminator], self.hparams.model)

    def after_init_from(self, source_phase: str | None) -> None:
        """Called once ``init_from`` weights are in; ``source_phase`` is the phase that wrote
        them (the checkpoint's ``pirec_phase``). Nothing to do by default."""

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
            extra = tuple(getattr(datamodule, "extra_val_names", ()))
            self.val_sets = ValidationSets(self.val_reports, extra, lpips=True)
            self.hparams["lpips_status"] = self.val_sets.lpips_status
        if stage == "fit" and not self._vgg:
            loss = self.hparams.loss
            wants_vgg = loss["perceptual"] > 0 or loss["style"] > 0
            vgg, reason = build_vgg(
                loss["vgg"] if wants_vgg else "off", loss["vgg_weights"], loss["vgg_input"]
            )
            if not wants_vgg:
                reason = "perceptual and style weights are 0"
            self._vgg = [vgg]
            self.hparams["vgg_status"] = vgg_name(vgg) if vgg is not None else f"off: {reason}"
            if vgg is not None:
                # a plain dict: these hold the VGG and must stay out of the module tree
                self._vgg_losses = {"perceptual": PerceptualLoss(vgg), "style": StyleLoss(vgg)}

    def network(self, name: str) -> nn.Module:
        """``generator`` or ``discriminator``, through its DDP wrapper while gradients are on
        (so its gradients are all-reduced in its own backward pass), else the plain module."""
        wrapper = self._ddp_wrappers.get(name)
        return wrapper if wrapper is not None and torch.is_grad_enabled() else getattr(self, name)

    @property
    def vgg(self) -> VGG19Features | None:
        return self._vgg[0] if self._vgg else None

    def on_fit_start(self) -> None:
        for loss in self._vgg_losses.values():
            loss.to(self.device)

    def on_train_end(self) -> None:
        # data.preprocess_on=ahead: its thread stops before the DataLoader's workers do
        close = getattr(self.trainer.datamodule, "close_ahead", None)
        if close is not None:
            close()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        config = dict(self.hparams.model["optimizer"])
        if "betas" in config:  # `betas=[0,0.9]` from a command line gives ints, which Adam rejects
            config["betas"] = tuple(float(b) for b in config["betas"])
        # fused Adam/AdamW/SGD unless the config picks: they skip bad steps on the device
        device = next(self.generator.parameters()).device
        config.update(fused_options(get_class(config["_target_"]), config, device))
        make = instantiate(config)
        opt_g = make(params=self.generator.parameters())
        opt_d = make(params=self.discriminator.parameters())
        for group in opt_d.param_groups:
            group["lr"] = group["lr"] * float(self.hparams.model.get("d2g_lr", 0.1))
        return [opt_g, opt_d]

    # --------------------------------------------------------------------------- phase recipe
    def generator_input(self, batch: dict[str, Tensor]) -> Tensor:
        """The (B, 3, H, W) image the generator starts from (masked ground truth, color
        domain, preliminary output...)."""
        raise NotImplementedError

    def baseline(self, batch: dict[str, Tensor]) -> Tensor:
        """What the output is compared against as a no-learning baseline (default: the input)."""
        return self.generator_input(batch)

    def forward(self, image: Tensor, edge: Tensor) -> Tensor:
        """Generator output (B, 3, H, W) in [0, 1] from an image (B, 3, H, W) in [0, 1] and an
        edge map (B, 1, H, W) in {0, 1}."""
        return self.network("generator")(torch.cat([image, edge], dim=1))

    def reconstruct(self, batch: dict[str, Tensor]) -> Tensor:
        return self(self.generator_input(batch), batch["edge"])

    # ------------------------------------------------------------------------------- training
    def l1_term(self, output: Tensor, target: Tensor, batch: dict[str, Tensor] | None) -> Tensor:
        """The unweighted L1 term (imitation rescales it by the hole fraction)."""
        return l1_loss(output, target)

    def style_images(
        self, output: Tensor, target: Tensor, batch: dict[str, Tensor] | None
    ) -> tuple[Tensor, Tensor] | None:
        """Images the style term compares when they are not ``output`` and ``target``
        themselves (imitation: the holes only); ``None`` reuses the perceptual features."""
        return None

    def generator_losses(
        self, output: Tensor, target: Tensor, batch: dict[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Weighted generator loss terms and their sum under ``loss``."""
        w = self.hparams.loss
        # the plain discriminator: its weights are frozen here (toggle_optimizer), so its DDP
        # wrapper must not expect gradients from this backward pass
        logits, _ = self.discriminator(output)
        terms = {
            "l1": self.l1_term(output, target, batch) * w["l1"],
            "adversarial": self.adversarial_loss(logits, True, for_discriminator=False)
            * w["adversarial"],
        }
        if self.vgg is not None:  # one VGG pass per image feeds both terms
            fx, fy = self.vgg(output), self.vgg(target)
            if w["perceptual"] > 0:
                terms["perceptual"] = (
                    self._vgg_losses["perceptual"].from_features(fx, fy) * w["perceptual"]
                )
            if w["style"] > 0:
                images = self.style_images(output, target, batch)
                if images is not None:
                    fx, fy = self.vgg(images[0]), self.vgg(images[1])
                terms["style"] = self._vgg_losses["style"].from_features(fx, fy) * w["style"]
        terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms

    def discriminator_loss(self, output: Tensor, target: Tensor) -> Tensor:
        discriminator = self.network("discriminator")
        real, _ = discriminator(target)
        fake, _ = discriminator(output.detach())
        return (
            self.adversarial_loss(real, True, for_discriminator=True)
            + self.adversarial_loss(fake, False, for_discriminator=True)
        ) / 2

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()
        target = batch["image"]
        output = self.reconstruct(batch)

        # both losses against the same discriminator (as PI-REC/EdgeConnect), both backward
        # passes before any step, so a NaN/inf anywhere skips the step for both networks
        self.toggle_optimizer(opt_d)
        d_loss = self.discriminator_loss(output, target)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        terms = self.generator_losses(output, target, batch)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        self.untoggle_optimizer(opt_g)

        # the guard takes both steps or, on the device, neither (phases/numerics.py)
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        networks = () if scaled else (self.generator, self.discriminator)
        self.numeric_guard.step((opt_d, opt_g), (d_loss, terms["loss"]), networks, scaled)
        if self.numeric_guard.poll():
            self.trainer.should_stop = True
        self.log("train/skipped_steps", self.numeric_guard.skipped_tensor, batch_size=len(target))

        logged = {f"train/g_{k}" if k != "loss" else "train/g_loss": v for k, v in terms.items()}
        logged["train/d_loss"] = d_loss
        self.log_dict(
            {k: v.detach() for k, v in logged.items()}, prog_bar=False, batch_size=len(target)
        )
        self.log("g_loss", terms["loss"].detach(), prog_bar=True, logger=False)
        # generator steps taken (checkpoint names use it; Lightning's `step` counts both optimizers)
        # made on the device by a fill: a logged Python float would be copied from the host
        steps = torch.full((), float(self.generator_step), device=self.device)
        self.log("generator_step", steps, logger=False)
        return terms["loss"]

    # ----------------------------------------------------------------------------- evaluation
    def validation_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        # metrics in float32 whatever the precision (SSIM cancels badly in float16)
        output = self.reconstruct(batch).float().clamp(0, 1)
        for report, image in self.val_images(batch, output).items():
            self.val_sets.update(dataloader_idx, report, image, batch["image"])
        if batch_idx == 0 and self.trainer is not None and self.trainer.is_global_zero:
            columns = self.grid_tensors(batch, output)
            grid = sample_grid(columns, int(self.hparams.num_samples))
            prefix = self.val_sets.prefix(dataloader_idx)
            tag = "samples" if prefix == MAIN else f"samples_{prefix.removeprefix(MAIN + '_')}"
            log_sample_grid(self.trainer, grid, tag=f"{self.name}/{tag}", step=self.generator_step)

    def val_images(self, batch: dict[str, Tensor], output: Tensor) -> dict[str, Tensor]:
        """The images of ``val_reports`` for a validation batch, (B, 3, H, W) in [0, 1]."""
        return {"output": output, "baseline": self.baseline(batch)}

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> dict[str, Tensor]:
        """``trainer.predict(model, datamodule)``: ``{"index": (B,), "input": the generator's
        starting image, "output": the reconstruction}``, images (B, 3, H, W) in [0, 1]."""
        output = self.reconstruct(batch).float().clamp(0, 1)
        return {"index": batch["index"], "input": self.generator_input(batch), "output": output}

    def grid_tensors(self, batch: dict[str, Tensor], output: Tensor) -> list[Tensor]:
        """Columns of the sample grid, matching ``grid_columns``."""
        return [batch["edge"], self.generator_input(batch), output, batch["image"]]

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_sets.compute_and_reset()
        self.log_dict(metrics, prog_bar=False, sync_dist=True)
        if "val/psnr" in metrics:
            self.log("val_psnr", metrics["val/psnr"], prog_bar=True, logger=False, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # lets a later phase check where its weights come from
        checkpoint["pirec_phase"] = self.name
        checkpoint["pirec_skipped_steps"] = self.numeric_guard.skipped

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.numeric_guard.skipped = int(checkpoint.get("pirec_skipped_steps", 0))

    @property
    def generator_step(self) -> int:
        """Generator optimizer steps taken so far (what users count as training steps)."""
        return int(self.global_step) // self.optimizer_steps_per_batch
