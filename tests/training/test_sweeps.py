"""Hyperparameter search through Hydra: the Optuna sweeper over the joblib launcher (two trials in
parallel processes), optimizing the metric ``train.py`` returns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_train


def last_logged(metrics_csv: Path, key: str) -> float:
    with open(metrics_csv) as file:
        values = [float(row[key]) for row in csv.DictReader(file) if row.get(key)]
    return values[-1]


@pytest.mark.slow
def test_optuna_sweep_on_joblib_optimizes_the_returned_metric(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = run_train(
        "hparams_search=optuna",
        "hydra/launcher=joblib",
        "hydra.sweeper.n_trials=2",
        "debug=tiny",
        "trainer.max_steps=2",
        f"hydra.sweep.dir={tmp_path}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    values = []
    for trial in ("0", "1"):
        job = tmp_path / trial
        assert (job / "checkpoints" / "last.ckpt").is_file()
        (metrics_csv,) = (job / "csv").rglob("metrics.csv")
        values.append(last_logged(metrics_csv, "val/psnr"))
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert any(o.startswith("model.optimizer.lr=") for o in overrides)
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(values), rel=1e-5)
