"""Killed runs, strangers' checkpoints and numeric faults: nothing lost, one line each."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerStatus

from pirec_lightning.checkpoints import read_checkpoint, read_checkpoint_key
from pirec_lightning.errors import CheckpointError, ConfigError, TrainingDiverged
from pirec_lightning.training import train
from pirec_lightning.training.resume import AtomicCheckpointIO, mark_finished

ROOT = Path(__file__).resolve().parents[2]
POISON = "+callbacks.poison._target_=tests.helpers.PoisonBatches"


def _finite(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in module.parameters())


def test_a_nan_step_is_skipped_for_both_networks(make_cfg, tmp_path, caplog):
    cfg = make_cfg(
        "debug=tiny",
        "trainer.max_steps=3",
        POISON,
        "+callbacks.poison.from_batch=1",
        "+callbacks.poison.to_batch=1",
        output_dir=tmp_path / "run",
    )
    with caplog.at_level("INFO"):
        metrics, objects = train(cfg)
    # the console speaks in generator steps (Lightning's own message would say max_steps=6)
    assert "training stopped: trainer.max_steps=3 reached" in caplog.text
    assert metrics["train/skipped_steps"] == 1
    # the bad batch counts as a step (skipped on the device, as a gradient scaler skips)
    assert objects["model"].generator_step == 3
    assert _finite(objects["model"].generator) and _finite(objects["model"].discriminator)
    # Adam took exactly the 2 good steps in both networks
    for optimizer in objects["trainer"].optimizers:
        assert {int(s["step"]) for s in optimizer.state.values()} == {2}
    assert read_checkpoint_key(objects["last_ckpt"], "pirec_skipped_steps") == 1


def test_consecutive_bad_steps_stop_with_the_last_good_weights(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(
        "debug=tiny",
        "trainer.max_steps=8",
        "max_bad_steps=3",
        POISON,
        "+callbacks.poison.from_batch=2",
        output_dir=run,
    )
    with pytest.raises(TrainingDiverged, match="3 consecutive steps") as info:
        train(cfg)
    last = run / "checkpoints" / "last.ckpt"
    assert str(last) in str(info.value) and "model.optimizer.lr" in str(info.value)
    checkpoint = read_checkpoint(last)
    assert checkpoint["global_step"] == 10  # 2 good + 3 bad batches; Adam took the 2 good ones
    for optimizer in checkpoint["optimizer_states"]:
        assert {int(s["step"]) for s in optimizer["state"].values()} == {2}
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    assert not (run / "finished.json").exists()


@pytest.fixture(scope="module")
def imitation_ckpt(tmp_path_factory) -> Path:
    from pirec_lightning.config import compose_config

    run = tmp_path_factory.mktemp("imitation")
    _, objects = train(compose_config(["debug=tiny", "trainer.max_steps=2"], output_dir=run))
    return Path(objects["last_ckpt"])


def test_broken_checkpoints_are_one_line(make_cfg, tmp_path, imitation_ckpt):
    text = tmp_path / "notes.ckpt"
    text.write_text("epoch,loss\n1,0.5\n")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(imitation_ckpt.read_bytes()[:5000])
    for path in (text, truncated):
        for key in ("ckpt_path", "init_from"):
            phase = "imitation" if key == "ckpt_path" else "generating"
            with pytest.raises(ConfigError) as info:
                train(make_cfg("debug=tiny", f"phase={phase}", f"{key}={path}"))
            message = str(info.value)
            assert str(path) in message and "\n" not in message and "pirec train" in message
    # pickled code is refused, not run
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": pl.Callback()}, evil)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        train(make_cfg("debug=tiny", f"ckpt_path={evil}"))


def test_another_phase_or_architecture_is_one_line(make_cfg, imitation_ckpt):
    with pytest.raises(CheckpointError, match="imitation checkpoint .* init_from="):
        train(make_cfg("debug=tiny", "phase=generating", f"ckpt_path={imitation_ckpt}"))
    wider = "model.generator.base_channels=16"
    with pytest.raises(CheckpointError) as info:
        train(make_cfg("debug=tiny", wider, f"ckpt_path={imitation_ckpt}"))
    message = str(info.value)
    assert "model.generator.base_channels=8 there, 16 here" in message
    assert "experiment=quickstart" in message


def test_reading_one_key_does_not_read_the_tensors(tmp_path):
    path = tmp_path / "big.ckpt"
    torch.save({"global_step": 42, "state_dict": {"w": torch.zeros(25_000_000)}}, path)  # 100 MB
    io_file = Path("/proc/self/io")
    if not io_file.exists():
        pytest.skip("needs /proc/self/io")

    def bytes_read() -> int:
        return int(dict(line.split(": ") for line in io_file.read_text().splitlines())["rchar"])

    before = bytes_read()
    assert read_checkpoint_key(path, "global_step") == 42
    assert bytes_read() - before < 5_000_000
    before = bytes_read()
    torch.load(path, weights_only=True)  # the control: a plain load reads it all
    assert bytes_read() - before > 90_000_000


def test_atomic_save_through_fsspec_and_finished_only_after_a_normal_end(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 7, "w": torch.ones(3)}, "memory://runs/last.ckpt")
    assert read_checkpoint_key("memory://runs/last.ckpt", "global_step") == 7
    io.save_checkpoint({"global_step": 8}, tmp_path / "ckpts" / "last.ckpt")
    assert read_checkpoint_key(tmp_path / "ckpts" / "last.ckpt", "global_step") == 8
    assert [p.name for p in (tmp_path / "ckpts").iterdir()] == ["last.ckpt"]  # no temp left
    # what Lightning loads for ckpt_path goes through weights_only, whatever torch's default
    evil = tmp_path / "evil.ckpt"
    torch.save({"payload": pl.Callback()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        io.load_checkpoint(evil)

    trainer = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.state.status = TrainerStatus.INTERRUPTED  # what older Lightning returns on Ctrl-C
    assert not mark_finished(tmp_path, "imitation", {}, trainer)
    trainer.state.status = TrainerStatus.FINISHED
    assert mark_finished(tmp_path, "imitation", {"val/psnr": 1.0}, trainer)
    assert (tmp_path / "finished.json").is_file()


def test_a_single_phase_rerun_resumes_or_says_it_is_finished(make_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    first, _ = train(make_cfg("debug=tiny", "trainer.max_steps=2", output_dir=run))
    assert (run / "finished.json").is_file()
    with caplog.at_level("INFO"):
        again, objects = train(make_cfg("debug=tiny", "trainer.max_steps=2", output_dir=run))
    assert objects["finished_before"] and again == first
    assert "already finished" in caplog.text
    _, longer = train(make_cfg("debug=tiny", "trainer.max_steps=3", output_dir=run))
    assert longer["model"].generator_step == 3  # resumed at 2, not retrained from 0
    assert {int(s["step"]) for s in longer["trainer"].optimizers[0].state.values()} == {3}


def _train_command(run_dir: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "debug=tiny",
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=100",
        "callbacks.model_checkpoint.every_n_train_steps=1",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]


def _kill_after_first_checkpoint(run_dir: Path, steps: int, extra_wait: float) -> int:
    """Start training, SIGKILL it ``extra_wait`` seconds after last.ckpt first appears; the
    generator steps in last.ckpt at that moment."""
    env = {**os.environ, "PIREC_OFFLINE": "1"}
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        _train_command(run_dir, steps),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(extra_wait)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return int(read_checkpoint_key(last, "global_step")) // 2  # loadable after the kill


def test_sigkill_then_resume(make_cfg, tmp_path):
    run = tmp_path / "killed"
    saved = _kill_after_first_checkpoint(run, steps=40, extra_wait=0.3)
    assert 1 <= saved < 40
    assert not (run / "finished.json").exists()
    assert (run / "run.lock").is_file()  # the killed run's lock: stale, taken over below
    _, objects = train(
        make_cfg(
            "debug=tiny", "trainer.max_steps=6", "trainer.val_check_interval=100", output_dir=run
        )
    )
    assert objects["model"].generator_step == max(6, saved)
    assert (run / "finished.json").is_file()


@pytest.mark.slow
def test_sigkill_at_random_moments_always_resumes(tmp_path):
    import random

    rng = random.Random(11)
    run, steps, env = tmp_path / "killed", 30, {**os.environ, "PIREC_OFFLINE": "1"}
    previous = 0
    for _ in range(5):
        saved = _kill_after_first_checkpoint(run, steps, extra_wait=rng.uniform(0.0, 4.0))
        assert saved >= previous  # the step count survives every kill
        previous = saved
    result = subprocess.run(
        _train_command(run, steps), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_checkpoint_key(run / "checkpoints" / "last.ckpt", "global_step") == 2 * steps
    assert (run / "finished.json").is_file()


def test_a_run_dir_holding_another_phase_is_refused(make_cfg, tmp_path, imitation_ckpt):
    """generating into the imitation run's dir: neither its finished.json nor its last.ckpt is
    taken for generating's (with or without finished.json)."""
    import shutil

    imitation_dir = imitation_ckpt.parent.parent
    assert (imitation_dir / "finished.json").is_file()
    unfinished = tmp_path / "unfinished"
    shutil.copytree(imitation_dir, unfinished)
    (unfinished / "finished.json").unlink()
    for run_dir in (imitation_dir, unfinished):
        cfg = make_cfg(
            "debug=tiny", "phase=generating", f"init_from={imitation_ckpt}", output_dir=run_dir
        )
        with pytest.raises(ConfigError) as info:
            train(cfg)
        message = str(info.value)
        assert f"{run_dir} holds an imitation run" in message
        assert "choose another hydra.run.dir" in message and "\n" not in message
    assert read_checkpoint_key(imitation_ckpt, "pirec_phase") == "imitation"
