"""Validation metrics per validation set: the phase's own (``val/...``) and the named extra sets of
``data.extra_val`` (``val_<name>/...``), each with PSNR, SSIM, L1 and, when its weights can be had,
LPIPS, for the output and for each reference image of the phase (the no-learning baseline;
refinement's preliminary image).

LPIPS (AlexNet, logged as ``val/lpips`` beside ``val/psnr``, so checkpoints and sweeps can select
on it) needs the ImageNet AlexNet that ``pirec weights fetch`` converts, found as ``pirec
evaluate`` finds it (``$PIREC_WEIGHTS_DIR``, then the torch hub cache;
:func:`pirec_lightning.models.metrics.optional_metrics`); when it is absent, validation goes on
without LPIPS and says so in one line. The LPIPS network lives outside the module tree, so
checkpoints never hold it.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from pirec_lightning.models.metrics import optional_metrics

log = logging.getLogger(__name__)

#: prefix of the phase's own validation set
MAIN = "val"


def set_metrics(prefix: str) -> MetricCollection:
    """PSNR, SSIM and L1 (data range 1) logged as ``<prefix>/psnr`` ..."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            "l1": MeanAbsoluteError(),
        },
        prefix=f"{prefix}/",
    )


def prefix_of(name: str | None) -> str:
    """``val`` for the phase's own set, ``val_<name>`` for an extra one."""
    return MAIN if name is None else f"{MAIN}_{name}"


def lpips_metric() -> tuple[Any | None, str | None]:
    """LPIPS (AlexNet, inputs in [0, 1]) or ``(None, why not)``, with the weights found as
    ``pirec evaluate`` finds them (:func:`pirec_lightning.models.metrics.optional_metrics`)."""
    factories, skipped = optional_metrics()
    if "lpips" not in factories:
        return None, skipped["lpips"]
    metric = factories["lpips"]()
    metric.requires_grad_(False)
    return metric, None


class ValidationSets(nn.Module):
    """Metric collections for every validation set and every image a phase reports on.

    Args:
        reports: what is measured against the ground truth: ``output`` first, then references
            (``baseline``, ``preliminary``); a reference's metrics get ``_<reference>`` appended.
        extra: names of the extra validation sets, in dataloader order after the main one.
        lpips: measure LPIPS too when its weights can be had.
    """

    def __init__(
        self, reports: tuple[str, ...], extra: tuple[str, ...] = (), lpips: bool = False
    ) -> None:
        super().__init__()
        self.reports = reports
        self.prefixes = (MAIN, *(prefix_of(name) for name in extra))
        self.metrics = nn.ModuleDict(
            {
                prefix: nn.ModuleDict({report: set_metrics(prefix) for report in reports})
                for prefix in self.prefixes
            }
        )
        # outside the module tree: never in checkpoints, never under DDP
        self._lpips: dict[str, Any] = {}
        self.lpips_status = "off"
        if lpips:
            metric, reason = lpips_metric()
            if metric is None:
                log.warning(reason)
                self.lpips_status = reason or "off"
            else:
                self.lpips_status = "alex"
                self._lpips = {f"{p}/{r}": metric.clone() for p in self.prefixes for r in reports}

    def prefix(self, dataloader_idx: int) -> str:
        return self.prefixes[dataloader_idx]

    def update(self, dataloader_idx: int, report: str, image: Tensor, target: Tensor) -> None:
        """Add a batch: ``image`` and ``target`` (B, 3, H, W) in [0, 1] (clamped, float32)."""
        image = image.float().clamp(0, 1).contiguous()
        target = target.float().contiguous()
        prefix = self.prefix(dataloader_idx)
        self.metrics[prefix][report].update(image, target)
        lpips = self._lpips.get(f"{prefix}/{report}")
        if lpips is not None:
            lpips.to(image.device).update(image, target)

    def compute_and_reset(self) -> dict[str, Tensor]:
        """``{<prefix>/<metric>[_<reference>]: value}`` for every set that saw a batch."""
        logged: dict[str, Tensor] = {}
        for prefix in self.prefixes:
            for report in self.reports:
                collection = self.metrics[prefix][report]
                suffix = "" if report == "output" else f"_{report}"
                lpips = self._lpips.get(f"{prefix}/{report}")
                if any(m.update_called for m in collection.values()):
                    values = dict(collection.compute())
                    if lpips is not None and lpips.update_called:
                        values[f"{prefix}/lpips"] = lpips.compute()
                    logged.update({f"{k}{suffix}": v for k, v in values.items()})
                collection.reset()
                if lpips is not None:
                    lpips.reset()
        return logged
