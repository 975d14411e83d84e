"""Run dirs that survive a SIGKILL and a second try: atomic saves, resuming, finished phases.

- :class:`AtomicCheckpointIO` writes every checkpoint (``last.ckpt`` included) atomically
  (:func:`~pirec_lightning.checkpoints.atomic_write_bytes`) and loads with ``weights_only``.
- :func:`check_resume_checkpoint` turns a corrupt file, another phase's checkpoint or another
  architecture into one :class:`~pirec_lightning.errors.CheckpointError` naming the file and fix.
- :func:`mark_finished` writes ``finished.json`` atomically, only when the Trainer ended normally.
- :func:`resume_run_dir` resumes a single phase run into a run dir that holds one already.
"""

from __future__ import annotations

import copy
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import OmegaConf, open_dict

from pirec_lightning.checkpoints import (
    atomic_write_bytes,
    model_state,
    read_checkpoint,
    read_checkpoint_key,
)
from pirec_lightning.errors import CheckpointError, RunInterrupted, TrainingDiverged
from pirec_lightning.phases import PhaseModule

__all__ = [
    "DONE_FILE",
    "AtomicCheckpointIO",
    "check_resume_checkpoint",
    "finish_phase",
    "mark_finished",
    "resume_run_dir",
]

DONE_FILE = "finished.json"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic saves and ``weights_only`` loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(buffer.getvalue(), path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # resuming never runs pickled code, whatever torch's default is
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)


def _architecture_hint(saved: dict[str, Any], model: torch.nn.Module) -> str:
    """Which model settings differ, from the checkpoint's saved hyperparameters."""
    theirs = (saved.get("hyper_parameters") or {}).get("model") or {}
    ours = dict(getattr(model, "hparams", {}).get("model") or {})
    differences = []
    for net in ("generator", "discriminator"):
        for key in sorted(set(theirs.get(net) or {}) | set(ours.get(net) or {})):
            a, b = (theirs.get(net) or {}).get(key), (ours.get(net) or {}).get(key)
            if a != b and key != "_target_":
                differences.append(f"model.{net}.{key}={a} there, {b} here")
    return "; ".join(differences[:3])


def check_resume_checkpoint(path: str | Path, model: torch.nn.Module, phase: str) -> None:
    """``ckpt_path`` must be a readable checkpoint of this phase and this architecture.

    Raises:
        CheckpointError: one line naming the file, what is wrong and the fix.
    """
    checkpoint = read_checkpoint(path, "ckpt_path")
    state = model_state(checkpoint, f"ckpt_path {path}")
    source = checkpoint.get("pirec_phase")
    if source is not None and source != phase:
        raise CheckpointError(
            f"ckpt_path {path} is a {source} checkpoint but this run trains phase={phase}; "
            f"resume it with phase={source}, or start {phase} from its weights with "
            f"init_from={path}"
        )
    own = model.state_dict()
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    if mismatched or missing:
        hint = _architecture_hint(checkpoint, model)
        detail = (
            f"{mismatched[0]} is {tuple(state[mismatched[0]].shape)} there, "
            f"{tuple(own[mismatched[0]].shape)} here"
            if mismatched
            else f"{len(missing)} tensors missing, e.g. {missing[0]}"
        )
        raise CheckpointError(
            f"ckpt_path {path} has another architecture ({hint or detail}); resume with the "
            "settings it was trained with (a quickstart run resumes with experiment=quickstart)"
        )


def mark_finished(folder: str | Path, phase: str, metrics: dict[str, float], trainer: Any) -> bool:
    """Write ``<folder>/finished.json`` atomically when ``trainer`` ended normally.

    Returns:
        Whether the file was written (False for an interrupted or stopped-early Trainer).
    """
    if not trainer_finished(trainer):
        return False
    payload = json.dumps({"phase": phase, "metrics": metrics}, indent=2).encode()
    atomic_write_bytes(payload, Path(folder) / DONE_FILE)
    return True


def trainer_finished(trainer: Any) -> bool:
    """The Trainer's fit ended by itself (not interrupted, not failed, on every Lightning)."""
    state = trainer.state
    return bool(state.finished) and not trainer.interrupted


def finish_phase(trainer: Any, model: Any, last: str | None, output_dir: str | Path) -> None:
    """After ``fit`` returned: raise what the user must know instead of handing the phase on.

    Raises:
        TrainingDiverged: ``max_bad_steps`` consecutive NaN/inf steps; ``last`` holds the last
            good weights.
        RunInterrupted: the Trainer was interrupted (Lightning versions that return on Ctrl-C).
    """
    guard = getattr(model, "numeric_guard", None)
    if guard is not None and guard.exhausted:
        raise TrainingDiverged(
            f"{model.name} stopped at generator step {model.generator_step}: "
            f"{guard.longest} consecutive steps had a NaN or infinite loss or gradient "
            f"({guard.skipped} skipped in all); the last good weights are in {last}; lower "
            "model.optimizer.lr or check the data, then resume with ckpt_path=" + str(last)
        )
    if not trainer_finished(trainer):
        raise RunInterrupted(
            f"{model.name} was interrupted at generator step {model.generator_step}; rerun the "
            f"same command with hydra.run.dir={output_dir} to resume from {last}"
        )


def find_resume_point(
    output_dir: str | Path, checkpoints_dir: str | Path, max_steps: int | None, per_batch: int
) -> tuple[str | None, dict[str, float] | None]:
    """What to do with a run dir that already holds a phase: ``(ckpt_path, None)`` to resume
    its ``last.ckpt``, ``(None, metrics)`` when it finished and ``max_steps`` asks for no more,
    ``(None, None)`` for a fresh run dir.

    Raises:
        CheckpointError: ``last.ckpt`` is unreadable (it names the file).
    """
    last = Path(checkpoints_dir).expanduser() / "last.ckpt"
    if not last.is_file():
        return None, None
    done = Path(output_dir).expanduser() / DONE_FILE
    if done.is_file():
        steps = int(read_checkpoint_key(last, "global_step", 0)) // per_batch
        if max_steps is None or max_steps <= 0 or steps >= max_steps:
            return None, json.loads(done.read_text()).get("metrics", {})
    read_checkpoint(last, "the run dir's")  # unreadable: say so before Lightning does
    return str(last), None


def resume_run_dir(cfg: Any, output_dir: Path) -> tuple[Any, dict[str, float] | None]:
    """A single phase run into a run dir that holds one already: ``(cfg with ckpt_path=its
    last.ckpt, None)`` to resume, ``(cfg with ckpt_path=last.ckpt, metrics)`` when it is
    finished (and says so), ``(cfg, None)`` otherwise or when ``ckpt_path`` is given."""
    if cfg.get("ckpt_path") is not None:
        return cfg, None
    checkpoints = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    checkpoints = Path(checkpoints) if checkpoints else output_dir / "checkpoints"
    resume, done = find_resume_point(
        output_dir, checkpoints, cfg.trainer.get("max_steps"), PhaseModule.optimizer_steps_per_batch
    )
    if resume is None and done is None:
        return cfg, None
    log = logging.getLogger("pirec_lightning.train")
    name = cfg.phase.name
    if done is not None:
        log.info(
            "%s already finished in %s (%s); raise trainer.max_steps to train it "
            "further, or choose a new hydra.run.dir",
            name,
            output_dir,
            DONE_FILE,
        )
    else:
        log.info("%s: resuming from %s", name, resume)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.ckpt_path = str(checkpoints / "last.ckpt")
    return cfg, done
