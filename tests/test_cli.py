"""The `pirec` console script and a real Hydra multirun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pirec_lightning import __version__
from pirec_lightning.cli import main
from tests.helpers import run_train

ROOT = Path(__file__).resolve().parents[1]


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert __version__ in capsys.readouterr().out


def test_pirec_train_runs_hydra(tmp_path):
    env = {**os.environ, "PIREC_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pirec_lightning.cli", "train", "phase=nonexistent"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "imitation" in result.stderr


def test_multirun_sweep(tmp_path):
    """Two jobs in one process: each leaves its own run dir, checkpoints, CSV log and W&B run
    (the first job's run is finished, not continued by the second)."""
    result = run_train(
        "-m",
        "debug=tiny",
        "trainer.max_steps=2",
        "logger=[csv,wandb]",
        "model.optimizer.lr=1e-4,2e-4",
        f"hydra.sweep.dir={tmp_path}",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["0", "1"]
    for run in runs:
        job = tmp_path / run
        config = (job / ".hydra" / "overrides.yaml").read_text()
        assert "model.optimizer.lr" in config
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert (job / "csv" / "version_0" / "metrics.csv").is_file()
        assert len(list(job.rglob("offline-run-*"))) == 1, f"job {run}: not one W&B run"
