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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of a real one-step ``phase=all`` run (32 px, tiny networks), per phase."""
    from pirec_lightning.training import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    overrides = ["phase=all", "debug=tiny", "model.generator.res_blocks=1", "~logger"]
    overrides += ["~callbacks.lr_monitor", "trainer.limit_val_batches=0"]
    overrides += [
        f"phase.stages.{p}.max_steps=1" for p in ("imitation", "generating", "refinement")
    ]
    train(compose_config(overrides, output_dir=run_dir))
    phases = ("imitation", "generating", "refinement")
    return {p: run_dir / p / "checkpoints" / "last.ckpt" for p in phases}
