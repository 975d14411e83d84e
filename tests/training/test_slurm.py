"""The cluster path on a real Slurm (`make slurm-up`, then `make test-slurm`): a 2-job sweep through
Hydra's submitit launcher and a 2-task DDP training on CPU through sbatch + srun. Skipped, with the
reason, when no Slurm answers. Every wait has a deadline; jobs left behind are cancelled."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 540


def _slurm_missing() -> str | None:
    """Why Slurm cannot run jobs here, or None when a controller answers and a node is up."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH: run `make slurm-up` (or use a machine with Slurm)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
        nodes = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"Slurm does not answer ({error}): run `make slurm-up`"
    if "UP" not in ping.stdout:
        said = (ping.stdout.strip() or ping.stderr.strip() or "no answer").splitlines()[0]
        return f"no Slurm controller answers ({said}): run `make slurm-up`"
    if not any(s.startswith(("idle", "mix", "alloc")) for s in nodes.stdout.split()):
        return f"no Slurm node is up (states: {nodes.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = _slurm_missing()
    if reason:
        pytest.skip(reason)


def _env() -> dict[str, str]:
    """This environment with absolute PYTHONPATH entries (jobs may start elsewhere)."""
    env = {**os.environ, "PIREC_OFFLINE": "1"}
    paths = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _scancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)


def _job_state(job_id: str) -> str:
    shown = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=15
    ).stdout
    for field in shown.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "UNKNOWN"


def test_sweep_of_two_jobs_through_submitit_slurm(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
        "debug=tiny",
        "trainer.max_steps=2",
        "model.optimizer.lr=1e-4,2e-4",
        f"hydra.sweep.dir={sweep}",
    ]
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=DEADLINE_S
        )
    finally:  # whatever happened, no job of this sweep stays queued (folders: <array>_<task>)
        _scancel(sorted({p.name.split("_")[0] for p in (sweep / ".submitit").glob("*_*")}))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in (sweep / ".submitit").glob("*_*") if p.is_dir())
    assert len(jobs) == 2, jobs
    for job in jobs:  # submitit's own record that Slurm ran the job to its end
        assert list((sweep / ".submitit" / job).glob("*_result.pkl")), job
        assert list((sweep / ".submitit" / job).glob("*_log.out")), job
    for run in ("0", "1"):
        assert (sweep / run / "checkpoints" / "last.ckpt").is_file()
        assert list((sweep / run / "csv").rglob("metrics.csv"))
        assert (sweep / run / "train.log").is_file()


def test_two_task_ddp_training_through_sbatch_and_srun(slurm, tmp_path):
    """phase=all on two Slurm tasks: both ranks run every phase from the same plan."""
    run_dir, ranks = tmp_path / "run", tmp_path / "ranks"
    output = tmp_path / "slurm-%j.out"
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--output={output}",
            f"--export=ALL,PYTHON={sys.executable},TRAINER=ddp_cpu,RUN_DIR={run_dir}",
            str(ROOT / "scripts" / "slurm" / "train_ddp.sbatch"),
            "phase=all",
            "debug=tiny",
            "+callbacks.record._target_=tests.helpers.RecordRank",
            f"+callbacks.record.folder={ranks}",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    state, deadline = "PENDING", time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            state = _job_state(job_id)
            if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
                break
            time.sleep(2)
    finally:
        if state in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            _scancel([job_id])
    log = Path(str(output).replace("%j", job_id))
    text = log.read_text() if log.is_file() else "(no job output)"
    assert state == "COMPLETED", f"job {job_id} ended {state}:\n{text[-3000:]}"
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    for phase in ("imitation", "generating", "refinement"):
        last = run_dir / phase / "checkpoints" / "last.ckpt"
        assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
        assert list((run_dir / phase / "csv").rglob("metrics.csv"))
        assert (run_dir / phase / "finished.json").is_file()
        records = [
            torch.load(ranks / f"{phase}_rank{r}.pt", map_location="cpu", weights_only=False)
            for r in (0, 1)
        ]
        for record in records:
            assert record["world_size"] == 2
            assert record["cluster_environment"] == "SLURMEnvironment"
        for key, value in records[0]["state_dict"].items():
            assert torch.equal(value, records[1]["state_dict"][key]), (phase, key)
