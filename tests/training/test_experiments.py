"""The experiments compose to the recipes they promise; gpu_quick runs its phases on the CPU."""

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
    from pirec_lightning.training import train

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


def test_quickstart_refines_without_the_adversarial_term(make_cfg, tmp_path):
    """experiment=quickstart (make train): only the refinement stage drops the adversarial
    term, and its module is built with it; quickstart_drawing adds the drawn-lines restyling."""
    from pathlib import Path

    from pirec_lightning.training import build_phase
    from pirec_lightning.training.plan import stage_config

    cfg = make_cfg("experiment=quickstart")
    validate_config(cfg)
    assert cfg.loss.adversarial > 0
    stages = {name: stage_config(cfg, name, Path(tmp_path)) for name in cfg.phase.stages}
    built = {
        name: build_phase(stage).hparams["loss"]["adversarial"] for name, stage in stages.items()
    }
    assert built == {
        "imitation": cfg.loss.adversarial,
        "generating": cfg.loss.adversarial,
        "refinement": 0.0,
    }
    drawing = make_cfg("experiment=quickstart_drawing")
    validate_config(drawing)
    assert drawing.data.confusion.drawn_edges == 0.5
    assert drawing.phase.stages.refinement.module.loss.adversarial == 0.0
    assert drawing.data.image_size == cfg.data.image_size == 64
