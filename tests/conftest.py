"""Shared fixtures: the composed Hydra config (as `python train.py` sees it) in a temp run dir."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from pirec_lightning.config import compose_config

# Tests never reach the network: VGG weights resolve from local files or are reported missing.
os.environ.setdefault("PIREC_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# image-folder scan caches stay out of the user's ~/.cache
os.environ.setdefault("PIREC_CACHE_DIR", tempfile.mkdtemp(prefix="pirec-test-cache-"))

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the training config with overrides; outputs go to a fresh temp dir."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config(list(overrides), output_dir=output_dir or tmp_path / "run")

    return make
