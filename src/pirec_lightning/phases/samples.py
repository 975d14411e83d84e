"""Sample grids (one row per image, one column per stage of the reconstruction) and their logging
through whichever logger is active."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image


def sample_grid(columns: list[Tensor], num_samples: int = 8) -> Tensor:
    """Stack columns side by side, one row per sample.

    Args:
        columns: tensors (B, 1 or 3, H, W) in [0, 1]; single-channel maps are shown in grey.
        num_samples: rows to keep (the first ones of the batch).

    Returns:
        (3, rows * (H + 2) + 2, len(columns) * (W + 2) + 2) in [0, 1].
    """
    n = min(num_samples, min(len(c) for c in columns))
    tiles = [c[:n].detach().float().clamp(0, 1).expand(-1, 3, -1, -1) for c in columns]
    # interleave: row i = sample i across columns
    stacked = torch.stack(tiles, dim=1).flatten(0, 1).cpu()
    return make_grid(stacked, nrow=len(columns), padding=2, pad_value=1.0)


def log_sample_grid(trainer: pl.Trainer, grid: Tensor, tag: str, step: int) -> list[Path]:
    """Send a grid to every active logger; CSV logging writes PNG files into its run dir.

    Returns the PNG files written (empty when no logger writes files).
    """
    written: list[Path] = []
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, grid, global_step=step)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[grid])
        elif isinstance(logger, CSVLogger):
            folder = Path(logger.log_dir) / "samples"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{tag.replace('/', '_')}_step{step:06d}.png"
            save_image(grid, path)
            written.append(path)
    return written
