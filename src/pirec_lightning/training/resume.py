"""Run dirs that survive a SIGKILL and a second try: atomic saves, resuming, finished phases.

- :class:`AtomicCheckpointIO` writes every checkpoint (``last.ckpt`` included) atomically
  (:func:`~pirec_lightning.checkpoints.atomic_write_bytes`) and loads with ``weights_only``.
- :func:`check_resume_checkpoint` turns a corrupt file, another phase's checkpoint or another
  architecture into one :class:`~pirec_lightning.errors.CheckpointError` naming the file and fix.
- :func:`mark_finished` writes ``finished.json`` atomically, only when the Trainer ended normally.
- :func:`resume_run_dir` resumes a single phase run into a run dir that holds one already (of the
  same phase: another phase's run dir is refused).
- :func:`interruption` is the one line an interrupted run ends with (exit 130 or 143).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import shlex
import signal
import sys
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
from pirec_lightning.config import hydra_run
from pirec_lightning.errors import CheckpointError, ConfigError, RunInterrupted, TrainingDiverged
from pirec_lightning.phases import PhaseModule

__all__ = [
    "DONE_FILE",
    "AtomicCheckpointIO",
    "check_resume_checkpoint",
    "finish_phase",
    "interruption",
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


def finish_phase(trainer: Any, model: Any, last: str | None, cfg: Any) -> None:
    """After ``fit`` returned: raise what the user must know instead of handing the phase on.

    Raises:
        TrainingDiverged: ``max_bad_steps`` consecutive NaN/inf steps; ``last`` holds the last
            good weights.
        RunInterrupted: the Trainer was interrupted (Lightning versions that return on Ctrl-C);
            ``cfg`` names the run dir to resume.
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
        raise interruption(model, last, cfg)


#: the shell's exit status of a process stopped by each signal
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def resume_command(cfg: Any, run_dir: Path) -> str:
    """The command that resumes ``run_dir``: the user's own command line with
    ``hydra.run.dir=<run_dir>`` (``train(cfg)`` again from code)."""
    hydra = hydra_run(cfg)
    if hydra is None:
        return f"train(cfg) again with paths.output_dir={run_dir}"
    program = sys.argv[0] if sys.argv[0].startswith("pirec") else f"python {sys.argv[0]}"
    overrides = [o for o in hydra.overrides.task if not o.startswith("hydra.run.dir=")]
    return " ".join([program, shlex.join([*overrides, f"hydra.run.dir={run_dir}"])])


def interruption(
    model: Any, last: str | None, cfg: Any, signum: int = signal.SIGINT
) -> RunInterrupted:
    """The one line of a run stopped by ``signum`` (Ctrl-C: SIGINT, exit 130; SIGTERM: 143):
    the phase, the step it stopped at, the checkpoint kept and the command that resumes it
    (``paths.run_dir``, the top run dir of ``phase=all``, or ``paths.output_dir``)."""
    run_dir = Path(
        OmegaConf.select(cfg, "paths.run_dir", default=None) or cfg.paths.output_dir
    ).expanduser()
    where = f"{model.name} interrupted at generator step {model.generator_step}"
    command = resume_command(cfg, run_dir)
    if last is None or not Path(last).is_file():
        message = f"{where}, before its first checkpoint; start again with: {command}"
    else:
        per_batch = getattr(model, "optimizer_steps_per_batch", 1)
        saved = int(read_checkpoint_key(last, "global_step", 0)) // per_batch
        message = (
            f"{where}; last.ckpt kept at {last} (generator step {saved}); resume with: {command}"
        )
    return RunInterrupted(message, EXIT_CODES.get(signum, 130))


def _another_phase(output_dir: Path, held: str, phase: str, what: str) -> ConfigError:
    article = "an" if held[:1] in "aeiou" else "a"
    return ConfigError(
        f"run dir {output_dir} holds {article} {held} run ({what}), not {phase}; choose another "
        f"hydra.run.dir for phase={phase} (init_from=<its checkpoints/last.ckpt> starts "
        f"{phase} from that run's weights)"
    )


def find_resume_point(
    output_dir: str | Path,
    checkpoints_dir: str | Path,
    max_steps: int | None,
    per_batch: int,
    phase: str | None = None,
) -> tuple[str | None, dict[str, float] | None]:
    """What to do with a run dir that already holds ``phase``: ``(ckpt_path, None)`` to resume
    its ``last.ckpt``, ``(None, metrics)`` when it finished and ``max_steps`` asks for no more,
    ``(None, None)`` for a fresh run dir.

    Raises:
        ConfigError: the run dir holds another phase's run (its ``finished.json`` or its
            ``last.ckpt`` say so): neither is taken for this phase's.
        CheckpointError: ``last.ckpt`` is unreadable (it names the file).
    """
    output_dir = Path(output_dir).expanduser()
    done = output_dir / DONE_FILE
    record = json.loads(done.read_text()) if done.is_file() else None
    if phase is not None and record is not None and record.get("phase") not in (None, phase):
        raise _another_phase(output_dir, str(record["phase"]), phase, DONE_FILE)
    last = Path(checkpoints_dir).expanduser() / "last.ckpt"
    if not last.is_file():
        return None, None
    checkpoint = read_checkpoint(last, "the run dir's")  # unreadable: say so before Lightning
    held = checkpoint.get("pirec_phase")
    if phase is not None and held not in (None, phase):
        raise _another_phase(output_dir, str(held), phase, "checkpoints/last.ckpt")
    if record is not None:
        steps = int(checkpoint.get("global_step", 0)) // per_batch
        if max_steps is None or max_steps <= 0 or steps >= max_steps:
            return None, record.get("metrics", {})
    return str(last), None


def resume_run_dir(cfg: Any, output_dir: Path) -> tuple[Any, dict[str, float] | None]:
    """A single phase run into a run dir that holds one already: ``(cfg with ckpt_path=its
    last.ckpt, None)`` to resume, ``(cfg with ckpt_path=last.ckpt, metrics)`` when it is
    finished (and says so), ``(cfg, None)`` otherwise or when ``ckpt_path`` is given.

    Raises:
        ConfigError: the run dir holds another phase's run.
    """
    if cfg.get("ckpt_path") is not None:
        return cfg, None
    checkpoints = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    checkpoints = Path(checkpoints) if checkpoints else output_dir / "checkpoints"
    resume, done = find_resume_point(
        output_dir,
        checkpoints,
        cfg.trainer.get("max_steps"),
        PhaseModule.optimizer_steps_per_batch,
        cfg.phase.name,
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
