"""experiment=gpu_quick composes to the recipe it promises and runs its phases on the CPU."""

from __future__ import annotations

import pytest

from pirec_lightning.config import validate_config


def test_gpu_quick_is_the_full_networks_at_128_px_on_a_gpu(make_cfg):
    cfg = make_cfg("experiment=gpu_quick")
    validate_config(make_cfg("experiment=gpu_quick", "trainer.accelerator=cpu"))  # no GPU here
    assert cfg.phase.name == "all"
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.data.cache) == (128, 64, "device")
    assert cfg.data.root is None  # the embedded emoji
    assert (cfg.model.generator.base_channels, cfg.model.generator.res_blocks) == (64, 8)
    assert cfg.model.discriminator.base_channels == 64
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    steps = {name: stage.max_steps for name, stage in cfg.phase.stages.items()}
    assert steps == {"imitation": 1500, "generating": 2000, "refinement": 1000}


@pytest.mark.slow
def test_gpu_quick_trains_all_phases_with_cpu_overrides(make_cfg, tmp_path):
    """The recipe itself (SVG emoji at 128 px, device cache, phase hand-over) with the
    networks shrunk and two steps per phase, on the CPU."""
    from pirec_lightning.train import train

    cfg = make_cfg(
        "experiment=gpu_quick",
        "trainer=cpu",
        "trainer.precision=32-true",
        "data.batch_size=2",
        "data.limit=4",
        "data.num_workers=0",
        "model.generator.base_channels=8",
        "model.generator.res_blocks=1",
        "model.discriminator.base_channels=8",
        *(f"phase.stages.{name}.max_steps=2" for name in ("imitation", "generating", "refinement")),
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "callbacks.rich_progress_bar=null",
    )
    metrics, objects = train(cfg)
    assert {"imitation/val/psnr", "generating/val/psnr", "refinement/val/psnr"} <= set(metrics)
    assert (tmp_path / "run" / "refinement" / "checkpoints" / "last.ckpt").is_file()
