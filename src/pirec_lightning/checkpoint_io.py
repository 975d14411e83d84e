"""Checkpoints that survive a SIGKILL and strangers' files that cannot run code.

- :class:`AtomicCheckpointIO` writes every checkpoint (``last.ckpt`` included) to a temporary
  file next to it and renames it into place, locally and through fsspec paths, so a kill at any
  moment leaves the previous complete file.
- :func:`read_checkpoint` loads with ``weights_only=True`` (no pickled code runs) and memory-maps
  local files, so reading one key (:func:`read_checkpoint_key`) does not read the tensors.
- :func:`check_resume_checkpoint` turns a corrupt file, another phase's checkpoint or another
  architecture into one :class:`~pirec_lightning.errors.CheckpointError` naming the file and fix.
- :func:`mark_finished` writes ``finished.json`` atomically, only when the Trainer ended normally.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import get_filesystem

from pirec_lightning.errors import CheckpointError, RunInterrupted, TrainingDiverged

__all__ = [
    "DONE_FILE",
    "AtomicCheckpointIO",
    "atomic_write_bytes",
    "check_resume_checkpoint",
    "finish_phase",
    "mark_finished",
    "read_checkpoint",
    "read_checkpoint_key",
    "resume_run_dir",
]

DONE_FILE = "finished.json"

#: what torch.load raises for a file that is not a (complete) checkpoint
_LOAD_ERRORS = (
    RuntimeError,
    ValueError,
    KeyError,
    EOFError,
    OSError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    AttributeError,
    ImportError,
    IndexError,
    TypeError,
)


def _is_local(path: str | Path) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part.

    Local paths: a temporary file in the same folder, flushed to disk, then ``os.replace``.
    Other fsspec paths: a temporary object next to it, then ``fs.mv`` (object stores publish
    an object only when its upload completes, so the final name never holds a partial file).
    """
    if _is_local(path):
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            if temporary.exists():
                temporary.unlink()
        return
    fs = get_filesystem(str(path))
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with fs.open(temporary, "wb") as file:
        file.write(data)
    fs.mv(temporary, str(path))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic saves and ``weights_only`` loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        import io

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(buffer.getvalue(), path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # resuming never runs pickled code, whatever torch's default is
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)


def read_checkpoint(path: str | Path, role: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint as a dict, loaded without running pickled code; local files are
    memory-mapped, so tensors are only read when used.

    Raises:
        CheckpointError: missing, truncated, not a checkpoint, or holding code.
    """
    path_str = str(path)
    try:
        if _is_local(path_str):
            local = Path(path_str.removeprefix("file://")).expanduser()
            if not local.is_file():
                raise CheckpointError(f"{role} file does not exist: {local}")
            # mmap needs torch's zip format; legacy files (e.g. the original PI-REC .pth) load whole
            mmap = zipfile.is_zipfile(local)
            checkpoint = torch.load(local, map_location="cpu", weights_only=True, mmap=mmap)
        else:
            with get_filesystem(path_str).open(path_str, "rb") as file:
                checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        detail = f" (it references {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{role} {path} holds pickled Python objects besides tensors{detail}; refused "
            "without running any of it: load only weights you trust (a .ckpt written by "
            "pirec train)"
        ) from None
    except _LOAD_ERRORS as error:
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise CheckpointError(
            f"{role} {path} cannot be read as a checkpoint ({type(error).__name__}: {reason}); "
            "it is truncated, corrupt or not a checkpoint: give a .ckpt written by pirec train "
            "(checkpoints/last.ckpt)"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{role} {path} is not a Lightning checkpoint (not a dict)")
    return checkpoint


def read_checkpoint_key(path: str | Path, key: str, default: Any = None) -> Any:
    """One top-level entry of a checkpoint (e.g. ``global_step``) without reading its tensors."""
    return read_checkpoint(path).get(key, default)


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
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(
            f"ckpt_path {path} is not a Lightning checkpoint (no state_dict); give a .ckpt "
            "written by pirec train"
        )
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
    import copy
    import logging

    from omegaconf import OmegaConf, open_dict

    from pirec_lightning.phases import PhaseModule

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
