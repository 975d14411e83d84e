"""``phase=all``: imitation, generating and refinement in one run dir, handing ``last.ckpt`` on;
finished phases (``finished.json``) are skipped and an unfinished one resumes."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pirec_lightning.config import validate_config
from pirec_lightning.errors import ConfigError
from pirec_lightning.training.loggers import finish_wandb
from pirec_lightning.training.phase import train_phase
from pirec_lightning.training.resume import DONE_FILE
from pirec_lightning.training.rundir import hold_run_dir

__all__ = ["stage_config", "train_all"]

log = logging.getLogger("pirec_lightning.train")


def stage_config(cfg: DictConfig, name: str, run_dir: Path) -> DictConfig:
    """The single-phase config of stage ``name`` of ``phase=all``, writing under run_dir/name."""
    stage = copy.deepcopy(cfg)
    with open_dict(stage):
        stage.phase = cfg.phase.stages[name]
        if stage.phase.get("max_steps") is not None:
            stage.trainer.max_steps = stage.phase.max_steps
        stage.paths.output_dir = str(run_dir / name)
        stage.paths.run_dir = str(run_dir)  # the dir the command names (to resume the run)
        stage.ckpt_path = None
        stage.init_from = None
    return stage


def train_all(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """imitation -> generating -> refinement, each in ``<run dir>/<phase>/``, handing over
    ``last.ckpt``; finished phases (``finished.json``) are skipped, an unfinished one resumes."""
    if cfg.get("ckpt_path") is not None:
        raise ConfigError(
            "phase=all resumes by itself: re-run with the same hydra.run.dir instead of ckpt_path"
        )
    run_dir = Path(OmegaConf.select(cfg, "paths.output_dir")).expanduser()
    stages = {name: stage_config(cfg, name, run_dir) for name in cfg.phase.stages}
    for stage in stages.values():  # every stage's config is checked before any work
        validate_config(stage)
    with hold_run_dir(run_dir):  # once, for every stage (each in a subfolder of it)
        return _train_stages(cfg, run_dir, stages)


def _train_stages(
    cfg: DictConfig, run_dir: Path, stages: dict[str, DictConfig]
) -> tuple[dict[str, float], dict[str, Any]]:
    names = list(stages)
    metrics: dict[str, float] = {}
    objects: dict[str, Any] = {"cfg": cfg, "phases": {}}
    previous: str | None = cfg.get("init_from")
    # the plan is read from the run dir before any training, so every rank (which all start
    # before any of them can write) decides the same; each phase checks the agreement again
    finished = {name: (run_dir / name / DONE_FILE).is_file() for name in names}
    started = {name: (run_dir / name / "checkpoints" / "last.ckpt").is_file() for name in names}
    for name in names:
        stage, folder = stages[name], run_dir / name
        last = folder / "checkpoints" / "last.ckpt"
        done = folder / DONE_FILE
        if finished[name]:
            log.info("phase %s already finished in %s: skipping", name, folder)
            stage_metrics = json.loads(done.read_text())["metrics"]
        else:
            with open_dict(stage):
                if started[name]:
                    log.info("phase %s: resuming from %s", name, last)
                    stage.ckpt_path = str(last)
                stage.init_from = previous
            stage_metrics, stage_objects = train_phase(stage)
            objects["phases"][name] = stage_objects
            finish_wandb(stage_objects["loggers"])
        metrics.update({f"{name}/{k}": v for k, v in stage_metrics.items()})
        previous = str(last)
    objects["last_ckpt"] = previous
    return metrics, objects
