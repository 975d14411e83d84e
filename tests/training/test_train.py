"""End-to-end training through Hydra: composition, fast_dev_run, the command line and its errors."""

from __future__ import annotations

import csv
import signal
import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from pirec_lightning.config import ConfigError
from pirec_lightning.errors import RunInterrupted
from pirec_lightning.phases import ImitationPhase
from pirec_lightning.training import train
from tests.helpers import run_train

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_train(*args, cwd=cwd, HYDRA_FULL_ERROR="0")


def test_fast_dev_run_imitation(make_cfg):
    metrics, objects = train(make_cfg("phase=imitation", "debug=fdr"))
    assert isinstance(objects["model"], ImitationPhase)
    assert objects["trainer"].global_step == 2  # one batch: a discriminator and a generator step
    assert "train/g_l1" in metrics and metrics["train/g_l1"] > 0
    assert "val/psnr" in metrics and "val/psnr_baseline" in metrics


def test_tiny_run_via_command_line_writes_checkpoint_and_grid(tmp_path):
    run_dir = tmp_path / "X"
    result = run_cli("phase=imitation", "debug=tiny", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted(run_dir.rglob("*.ckpt"))
    assert run_dir / "checkpoints" / "last.ckpt" in checkpoints
    grids = sorted(run_dir.rglob("*.png"))
    assert grids, f"no sample grid in {run_dir}"
    # the checkpoint rebuilds its own module, weights included
    model = ImitationPhase.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    state = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    for key, value in model.generator.state_dict().items():
        assert torch.equal(value, state["state_dict"][f"generator.{key}"])
    assert not any(k.startswith(("_vgg", "vgg")) for k in state["state_dict"])
    assert model.hparams.vgg_status.startswith("off")


def test_unknown_phase_lists_valid_phases():
    result = run_cli("phase=nonexistent")
    assert result.returncode != 0
    assert "imitation" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=abc", "data.batch_size"),
        ("data.root=/nonexistent/images", "data.root folder does not exist"),
        ("loss.vgg=sometimes", "loss.vgg must be one of"),
        ("data.image_size=30", "data.image_size"),
    ],
)
def test_config_mistakes_stop_with_one_line(override, expected, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("debug=tiny", override, f"hydra.run.dir={run_dir}")
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip()
    assert expected in message
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert not run_dir.exists()  # no empty run dir with an empty log left behind


def test_unknown_key_is_rejected(tmp_path):
    result = run_cli("debug=tiny", "data.imagesize=32", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "imagesize" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_config_in_process(make_cfg):
    cfg = make_cfg("debug=tiny", "model.optimizer.lr=-1")
    with pytest.raises(ConfigError, match="model.optimizer.lr"):
        train(cfg)


def test_a_phase_sets_its_own_loss_weights_and_model_options(make_cfg):
    """phase.module.loss / phase.module.model override the run's loss and model for that phase."""
    from pirec_lightning.training import build_phase

    cfg = make_cfg(
        "phase=imitation",
        "debug=tiny",
        "+phase.module.loss.adversarial=0.0",
        "+phase.module.model.optimizer.lr=3.0e-5",
    )
    module = build_phase(cfg)
    assert module.hparams["loss"]["adversarial"] == 0.0
    assert module.hparams["model"]["optimizer"]["lr"] == 3.0e-5
    assert cfg.loss.adversarial != 0.0  # the run's own config is left as it is
    plain = build_phase(make_cfg("phase=imitation", "debug=tiny"))
    assert plain.hparams["loss"]["adversarial"] == cfg.loss.adversarial


def test_short_overfit_reduces_l1(make_cfg, tmp_path):
    cfg = make_cfg(
        "phase=imitation",
        "debug=tiny",
        "data.limit=4",
        "data.batch_size=4",
        "data.confusion.enabled=false",
        "model.optimizer.lr=2e-3",
        "loss.adversarial=0",
        "trainer.max_steps=40",
        "trainer.val_check_interval=40",
        "callbacks.model_checkpoint.every_n_train_steps=40",
        output_dir=tmp_path / "overfit",
    )
    train(cfg)
    (metrics_file,) = (tmp_path / "overfit" / "csv").rglob("metrics.csv")
    with open(metrics_file) as file:
        rows = list(csv.DictReader(file))
    l1 = [float(r["train/g_l1"]) for r in rows if r.get("train/g_l1")]
    assert len(l1) >= 30
    first, last = sum(l1[:5]) / 5, sum(l1[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_phase_all_runs_three_phases_and_resumes_where_interrupted(make_cfg, tmp_path):
    from tests import helpers

    run_dir = tmp_path / "all"
    interrupt = [
        "+callbacks.interrupt._target_=tests.helpers.InterruptAt",
        "+callbacks.interrupt.phase=generating",
        "+callbacks.interrupt.step=3",
    ]
    cfg = make_cfg("phase=all", "debug=tiny", *interrupt, output_dir=run_dir)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted) as info:  # Lightning's graceful Ctrl-C shutdown, one line
        train(cfg)
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works again afterwards
    assert info.value.exit_code == 130
    message = str(info.value)
    assert message.startswith("generating interrupted at generator step 3; last.ckpt kept at ")
    assert message.endswith(f"paths.output_dir={run_dir}")  # the top run dir, not the stage's
    assert (run_dir / "imitation" / "finished.json").is_file()
    assert (run_dir / "generating" / "checkpoints" / "last.ckpt").is_file()  # saved at step 2
    assert not (run_dir / "generating" / "finished.json").exists()
    assert not (run_dir / "refinement").exists()

    helpers.BATCHES.clear()
    cfg = make_cfg(
        "phase=all",
        "debug=tiny",
        "+callbacks.count._target_=tests.helpers.CountBatches",
        output_dir=run_dir,
    )
    metrics, objects = train(cfg)
    # imitation skipped, generating resumed at step 2 of 4, refinement from scratch
    assert dict(helpers.BATCHES) == {"generating": 2, "refinement": 4}
    assert set(objects["phases"]) == {"generating", "refinement"}
    for name in ("imitation", "generating", "refinement"):
        assert (run_dir / name / "finished.json").is_file()
        assert (run_dir / name / "checkpoints" / "last.ckpt").is_file()
        assert list((run_dir / name / "csv").rglob("samples/*.png"))
    assert "refinement/val/psnr" in metrics and "refinement/val/psnr_preliminary" in metrics
    assert objects["last_ckpt"] == str(run_dir / "refinement" / "checkpoints" / "last.ckpt")

    # the refinement checkpoint alone reconstructs, starting from the generating weights
    from pirec_lightning.phases import RefinementPhase

    refinement = RefinementPhase.load_from_checkpoint(objects["last_ckpt"])
    generating = torch.load(
        run_dir / "generating" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )["state_dict"]
    for key, value in refinement.preliminary_generator.state_dict().items():
        assert torch.equal(value, generating[f"generator.{key}"])

    # a third run finds everything finished and trains nothing
    helpers.BATCHES.clear()
    metrics_again, _ = train(cfg)
    assert not helpers.BATCHES
    assert metrics_again["refinement/val/psnr"] == pytest.approx(metrics["refinement/val/psnr"])


def test_refinement_without_generating_checkpoint_stops(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="refinement starts from a generating checkpoint"):
        train(make_cfg("phase=refinement", "debug=tiny"))


def test_refinement_from_an_imitation_checkpoint_stops(make_cfg, tmp_path):
    _, objects = train(make_cfg("phase=imitation", "debug=tiny", output_dir=tmp_path / "imi"))
    cfg = make_cfg("phase=refinement", "debug=tiny", f"init_from={objects['last_ckpt']}")
    with pytest.raises(ConfigError, match="comes from the imitation phase"):
        train(cfg)


def adam_steps(trainer) -> set[int]:
    """The step counts in the generator optimizer's per-parameter state."""
    return {int(state["step"]) for state in trainer.optimizers[0].state.values()}


def test_generating_from_imitation_then_resume_same_phase(make_cfg, tmp_path):
    _, imitation = train(make_cfg("phase=imitation", "debug=tiny", output_dir=tmp_path / "imi"))
    cfg = make_cfg(
        "phase=generating",
        "debug=tiny",
        f"init_from={imitation['last_ckpt']}",
        output_dir=tmp_path / "gen",
    )
    _, generating = train(cfg)
    assert generating["model"].generator_step == 4
    # the hand-over carried weights only: Adam counted this phase's 4 steps, not 4 + 4
    assert adam_steps(generating["trainer"]) == {4}
    assert generating["trainer"].global_step == 8  # this phase's generator + discriminator steps
    # ckpt_path resumes the same phase: optimizer state and step come back, training goes on
    cfg = make_cfg(
        "phase=generating",
        "debug=tiny",
        "trainer.max_steps=6",
        f"ckpt_path={generating['last_ckpt']}",
        output_dir=tmp_path / "gen2",
    )
    _, resumed = train(cfg)
    assert resumed["model"].generator_step == 6
    assert adam_steps(resumed["trainer"]) == {6}  # Adam state restored and used: 4 + 2 steps


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_other_loggers_record_metrics_and_grids(make_cfg, tmp_path, logger, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run_dir = tmp_path / "run"
    metrics, objects = train(make_cfg("debug=tiny", f"logger={logger}", output_dir=run_dir))
    assert "val/psnr" in metrics
    if logger == "tensorboard":
        events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
        assert events
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(events[0].parent))
        accumulator.Reload()
        assert "val/psnr" in accumulator.Tags()["scalars"]
        assert "imitation/samples" in accumulator.Tags()["images"]
    else:
        runs = list(run_dir.rglob("offline-run-*"))
        assert runs, "wandb wrote no offline run"
        assert list(runs[0].rglob("*.wandb"))
        objects["loggers"][0].experiment.finish()


def test_last_checkpoint_holds_the_final_step(make_cfg, tmp_path):
    """max_steps not a multiple of the save interval: last.ckpt still ends at max_steps."""
    cfg = make_cfg("debug=tiny", "trainer.max_steps=5", output_dir=tmp_path / "run")
    _, objects = train(cfg)
    state = torch.load(objects["last_ckpt"], map_location="cpu", weights_only=True)
    assert state["global_step"] == 10  # 5 generator steps, 5 discriminator steps
    assert (tmp_path / "run" / "checkpoints" / "step000004.ckpt").is_file()


def test_missing_folder_root_and_bad_confusion_stop_early(make_cfg):
    with pytest.raises(ConfigError, match="data.root is required"):
        train(make_cfg("debug=tiny", "data=folder"))
    with pytest.raises(ConfigError, match="data.confusion"):
        train(make_cfg("debug=tiny", "data.confusion.k=[5,2]"))


def test_imagenet_vgg_offline_stops_before_training(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("PIREC_OFFLINE", "1")
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match="vgg19-dcbb9e9d.pth") as error:
        train(make_cfg("debug=tiny", "loss.vgg=imagenet", output_dir=tmp_path / "run"))
    assert "loss.vgg=off" in str(error.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_ddp_spawn_on_cpu_two_processes(make_cfg, tmp_path):
    """Two CPU processes with DDP: the GAN's one-network backward passes and the frozen
    preliminary generator must not upset gradient synchronisation."""
    run_dir = tmp_path / "ddp"
    cfg = make_cfg(
        "phase=all",
        "debug=tiny",
        "trainer.devices=2",
        "trainer.strategy=ddp_spawn_find_unused_parameters_true",
        output_dir=run_dir,
    )
    metrics, _ = train(cfg)
    for name in ("imitation", "generating", "refinement"):
        state = torch.load(
            run_dir / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
        )
        assert state["global_step"] == 8
    assert "refinement/val/psnr" in metrics


# ------------------------------------------------------------------ issue 20: the first hour
def test_max_steps_minus_one_trains_until_stopped_keeping_the_last_checkpoints(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(
        "debug=tiny",
        "trainer.max_steps=-1",
        "trainer.val_check_interval=100",
        "callbacks.model_checkpoint.every_n_train_steps=1",
        "callbacks.model_checkpoint.keep_last=2",
        "+callbacks.interrupt._target_=tests.helpers.InterruptAt",
        "+callbacks.interrupt.phase=imitation",
        "+callbacks.interrupt.step=12",  # more than one epoch of debug=tiny (8 batches)
        output_dir=run,
    )
    with pytest.raises(RunInterrupted) as info:  # Ctrl-C is the way such a run ends
        train(cfg)
    assert info.value.exit_code == 130
    assert "imitation interrupted at generator step 12" in str(info.value)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step000010.ckpt", "step000011.ckpt"]


def test_keep_last_is_a_model_checkpoint_setting(make_cfg):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from pirec_lightning.training import build_callbacks

    cfg = make_cfg("debug=tiny")
    assert cfg.callbacks.model_checkpoint.keep_last == 3
    (checkpoint,) = [c for c in build_callbacks(cfg, 2) if isinstance(c, ModelCheckpoint)]
    assert (checkpoint.save_top_k, checkpoint.monitor, checkpoint.mode) == (3, "step", "max")
    assert checkpoint.save_last
    every = build_callbacks(make_cfg("debug=tiny", "callbacks.model_checkpoint.keep_last=null"), 2)
    assert [c.save_top_k for c in every if isinstance(c, ModelCheckpoint)] == [-1]
    for bad in ("trainer.max_steps=0", "trainer.max_steps=-2"):
        with pytest.raises(ConfigError, match="trainer.max_steps must be a positive integer or -1"):
            train(make_cfg("debug=tiny", bad))
    with pytest.raises(ConfigError, match="callbacks.model_checkpoint.keep_last"):
        train(make_cfg("debug=tiny", "callbacks.model_checkpoint.keep_last=-1"))


def test_a_run_shorter_than_its_validation_interval_validates_at_its_end(
    make_cfg, tmp_path, caplog
):
    from pirec_lightning.training import monitored_metric

    run = tmp_path / "run"
    cfg = make_cfg("debug=tiny", "trainer.max_steps=3", "trainer.val_check_interval=100",
                   output_dir=run)  # fmt: skip
    metrics, _ = train(cfg)
    assert monitored_metric(cfg, metrics) == metrics["val/psnr"]
    (metrics_file,) = (run / "csv").rglob("metrics.csv")
    with open(metrics_file) as file:
        validated = [r for r in csv.DictReader(file) if r.get("val/psnr")]
    assert len(validated) == 1  # once, at the end
    # validation off on purpose: a single run still succeeds (only sweeps need the metric)
    assert monitored_metric(cfg, {"train/g_loss": 1.0}) is None
    assert "optimized_metric 'val/psnr' was not logged" in caplog.text


def test_a_resumed_run_has_no_extra_noise(make_cfg, tmp_path, caplog):
    """No Lightning tips, no `weights_only` note; the progress bar never counts past its total."""
    run = tmp_path / "run"
    bar = ["+callbacks.bar._target_=tests.training.test_train.BarTotals"]
    with caplog.at_level("INFO"):
        train(make_cfg("debug=tiny", *bar, output_dir=run))
        BarTotals.seen.clear()
        train(make_cfg("debug=tiny", "trainer.max_steps=7", *bar, output_dir=run))  # resumes
    assert "Tip:" not in caplog.text and "weights_only" not in caplog.text
    assert BarTotals.seen and all(done <= total for done, total in BarTotals.seen)
    assert BarTotals.seen[-1][0] == BarTotals.seen[-1][1]


class BarTotals(pl.Callback):
    """Records (batches shown, total shown) of the training progress bar after every batch."""

    seen: list[tuple[int, int]] = []  # noqa: RUF012 - a test's record

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from pirec_lightning.training.callbacks import PIRECProgressBar

        (bar,) = [c for c in trainer.callbacks if isinstance(c, PIRECProgressBar)]
        BarTotals.seen.append((batch_idx + 1, int(bar.total_train_batches)))


def test_ddp_trainer_without_a_gpu_names_it(make_cfg):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError) as info:
        train(make_cfg("trainer=ddp"))
    message = str(info.value)
    assert "(trainer=ddp)" in message and "trainer=ddp_cpu" in message
