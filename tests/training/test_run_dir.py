"""A run holds its run dir: a second run into it stops with one line, a dead run's lock is taken
over, ranks and the stages of ``phase=all`` do not lock each other out; an interrupted run says
so in one line with its exit code (130 Ctrl-C, 143 SIGTERM) and how to resume."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl

from pirec_lightning.errors import RunDirBusy
from pirec_lightning.training import rundir, train
from pirec_lightning.training.rundir import LOCK_FILE, hold_run_dir, read_lock
from tests.helpers import run_train

ROOT = Path(__file__).resolve().parents[2]


def _train_args(run_dir: Path) -> list[str]:
    """A tiny run that goes on long enough to be interrupted, saving every step."""
    return [
        "phase=imitation",
        "debug=tiny",
        "trainer.max_steps=2000",
        "trainer.val_check_interval=1000",
        "callbacks.model_checkpoint.every_n_train_steps=1",
        "callbacks.model_checkpoint.keep_last=1",
        "~logger",
        "~callbacks.lr_monitor",
        f"hydra.run.dir={run_dir}",
    ]


def _start(run_dir: Path) -> subprocess.Popen:
    """``train.py`` in the background; returns once it has written its first checkpoint."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *_train_args(run_dir)],
        cwd=ROOT,
        env={**os.environ, "PIREC_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not last.exists():
        process.kill()
        pytest.fail(f"training wrote no checkpoint: {process.communicate()[1][-3000:]}")
    return process


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_second_run_into_a_held_run_dir_stops_then_sigterm_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "D"
    first = _start(run_dir)
    try:
        held = read_lock(run_dir)
        assert held["pid"] == first.pid and held["host"] == socket.gethostname()
        hydra_config = (run_dir / ".hydra" / "config.yaml").stat().st_mtime_ns
        second = run_train(*_train_args(run_dir), HYDRA_FULL_ERROR="0")
        assert second.returncode == 2, second.stderr[-3000:]
        message = second.stderr.strip()
        assert len(message.splitlines()) == 1 and message.startswith("error: ")
        assert f"PID {first.pid}" in message and socket.gethostname() in message
        assert f"since {held['since']}" in message and "hydra.run.dir" in message
        # it stopped before any work: the first run's records are untouched, it still trains
        assert (run_dir / ".hydra" / "config.yaml").stat().st_mtime_ns == hydra_config
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr[-3000:]
    (line,) = _error_lines(stderr)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert line.startswith("error: imitation interrupted at generator step ")
    assert f"last.ckpt kept at {last}" in line
    assert "resume with: python " in line and f"hydra.run.dir={run_dir}" in line
    assert not (run_dir / "finished.json").exists()
    assert not (run_dir / LOCK_FILE).exists()  # released on the way out


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    run_dir = tmp_path / "D"
    process = _start(run_dir)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    (line,) = _error_lines(stderr)
    assert line.startswith("error: imitation interrupted at generator step ")
    assert f"hydra.run.dir={run_dir}" in line
    assert "Traceback" not in stderr


HOLD = """
import sys, time
from pirec_lightning.training.rundir import hold_run_dir
with hold_run_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(run_dir: Path, **env: str) -> subprocess.Popen:
    """Another process holding ``run_dir`` (with ``env`` set); returns once it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_dir_refuses_in_process_and_a_dead_holder_is_taken_over(make_cfg, tmp_path):
    run_dir = tmp_path / "D"
    holder = _holder(run_dir)
    try:
        with pytest.raises(RunDirBusy, match=f"PID {holder.pid} on {socket.gethostname()}"):
            train(make_cfg("debug=tiny", output_dir=run_dir))
        assert not (run_dir / "checkpoints").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # leaves its lock file behind
        holder.wait()
    assert read_lock(run_dir)["pid"] == holder.pid
    with hold_run_dir(run_dir):  # stale: nobody holds it any more
        assert read_lock(run_dir)["pid"] == os.getpid()
    assert not (run_dir / LOCK_FILE).exists()


def test_other_ranks_of_the_run_never_lock(tmp_path, monkeypatch):
    run_dir = tmp_path / "D"
    holder = _holder(run_dir)  # as rank 0 of the same run would
    try:
        for variable in ("LOCAL_RANK", "NODE_RANK"):
            with monkeypatch.context() as patch:
                patch.setenv(variable, "1")
                with hold_run_dir(run_dir):  # no refusal, and rank 0's lock stays
                    assert read_lock(run_dir)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_other_ranks_stop_when_another_job_holds_the_dir(tmp_path, monkeypatch):
    """Rank 1 of Slurm job 2 into a dir job 1 holds: the same line as its rank 0, after giving
    rank 0 the time to take over a stale lock; rank 1 of job 1 itself goes on."""
    run_dir = tmp_path / "D"
    holder = _holder(run_dir, SLURM_JOB_ID="1")
    monkeypatch.setattr(rundir, "RANK_WAIT_S", 0.5)
    monkeypatch.setenv("LOCAL_RANK", "1")
    try:
        monkeypatch.setenv("SLURM_JOB_ID", "2")
        with pytest.raises(RunDirBusy, match=f"PID {holder.pid}"), hold_run_dir(run_dir):
            pass
        monkeypatch.setenv("SLURM_JOB_ID", "1")
        with hold_run_dir(run_dir):
            assert read_lock(run_dir)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def _no_flock(fd: int, operation: int) -> None:
    raise OSError(errno.ENOLCK, "No locks available")


def test_without_flock_the_pid_decides(tmp_path, monkeypatch):
    """Filesystems without flock (Lustre mounted without it): a lock whose PID is not alive on
    this host is stale; a live one, or one on another host, holds the dir; the same Slurm job
    (a requeued one) takes its own lock back."""
    monkeypatch.setattr(rundir.fcntl, "flock", _no_flock)
    run_dir = tmp_path / "D"
    run_dir.mkdir()
    lock = run_dir / LOCK_FILE
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    here = socket.gethostname()

    def write(pid: int, host: str = here, job: str | None = None) -> None:
        record = {"pid": pid, "host": host, "since": "2026-01-01 00:00:00", "job": job}
        lock.write_text(json.dumps(record))

    write(int(dead))
    with hold_run_dir(run_dir):
        assert read_lock(run_dir)["pid"] == os.getpid()
    write(os.getppid())  # alive on this host
    with pytest.raises(RunDirBusy, match=f"PID {os.getppid()}"), hold_run_dir(run_dir):
        pass
    write(int(dead), host="elsewhere")  # cannot be checked from here: held
    with pytest.raises(RunDirBusy, match="on elsewhere"), hold_run_dir(run_dir):
        pass
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    write(int(dead), host="elsewhere", job="slurm:4242")
    with hold_run_dir(run_dir):
        assert read_lock(run_dir)["pid"] == os.getpid()


class RecordLocks(pl.Callback):
    """Records, at every phase's start, which lock files exist under the run dir."""

    seen: dict[str, list[str]] = {}  # noqa: RUF012 - a test's record

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def on_train_start(self, trainer, pl_module) -> None:
        found = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob(LOCK_FILE))
        RecordLocks.seen[pl_module.name] = found


def test_phase_all_holds_its_top_run_dir_once(make_cfg, tmp_path):
    run_dir = tmp_path / "all"
    RecordLocks.seen.clear()
    steps = [f"phase.stages.{p}.max_steps=1" for p in ("imitation", "generating", "refinement")]
    cfg = make_cfg(
        "phase=all",
        "debug=tiny",
        "model.generator.res_blocks=1",
        "trainer.limit_val_batches=0",
        *steps,
        "+callbacks.locks._target_=tests.training.test_run_dir.RecordLocks",
        f"+callbacks.locks.root={run_dir}",
        output_dir=run_dir,
    )
    train(cfg)
    assert RecordLocks.seen == {p: [LOCK_FILE] for p in ("imitation", "generating", "refinement")}
    assert not (run_dir / LOCK_FILE).exists()


SLOW_BUILD = """
import sys, time
import pirec_lightning.training.phase as phase
from pirec_lightning.training.run import main

def slow_build(cfg):
    print("building", flush=True)
    time.sleep(120)

phase.build_datamodule = slow_build
sys.argv = ["train.py", *sys.argv[1:]]
main()
"""


def test_sigterm_before_training_is_one_line_and_143(tmp_path):
    run_dir = tmp_path / "D"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, *_train_args(run_dir)],
        cwd=ROOT,
        env={**os.environ, "PIREC_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:  # the log goes to stdout as well
        if line.strip() == "building":
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-3000:]
    (line,) = _error_lines(stderr)
    assert "stopped by SIGTERM while no phase was training" in line
    assert "Traceback" not in stderr
    assert not (run_dir / LOCK_FILE).exists()  # released on the way out
