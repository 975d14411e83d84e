"""Tiny phase modules and in-memory batches that need no preprocessing engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from tests.helpers import quiet_trainer

TINY_MODEL = {
    "generator": {
        "_target_": "pirec_lightning.models.networks.Generator",
        "base_channels": 8,
        "res_blocks": 1,
    },
    "discriminator": {
        "_target_": "pirec_lightning.models.networks.Discriminator",
        "base_channels": 8,
    },
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "betas": [0, 0.9]},
    "d2g_lr": 0.1,
}
TINY_LOSS = {"vgg": "off"}


class Batches(Dataset):
    """Fixed random PI-REC inputs at 32 px."""

    def __init__(self, n: int = 4, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.image = torch.rand(n, 3, size, size, generator=g)
        self.edge = (torch.rand(n, 1, size, size, generator=g) > 0.8).float()
        self.mask = (torch.rand(n, 1, size, size, generator=g) > 0.6).float()
        self.color_domain = (self.image * 3).round() / 3

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.image[i],
            "edge": self.edge[i],
            "mask": self.mask[i],
            "color_domain": self.color_domain[i],
            "index": i,
        }


def fit(module: pl.LightningModule, steps: int, root: Path) -> pl.Trainer:
    trainer = quiet_trainer(
        max_steps=steps * module.optimizer_steps_per_batch,
        limit_val_batches=1,
        val_check_interval=steps,
        check_val_every_n_epoch=None,
        default_root_dir=root,
    )
    loader = DataLoader(Batches(), batch_size=2)
    trainer.fit(module, loader, loader)
    return trainer


@pytest.fixture
def batch() -> dict:
    data = Batches()
    return {
        "image": data.image[:2],
        "edge": data.edge[:2],
        "mask": data.mask[:2],
        "color_domain": data.color_domain[:2],
    }
