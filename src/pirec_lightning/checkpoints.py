"""Reading and writing weights: the one place a checkpoint file is opened.

- :func:`read_checkpoint` loads with ``weights_only=True`` (no pickled code runs: a "poisoned"
  pickle is refused with one line) and memory-maps local files, so reading one key
  (:func:`read_checkpoint_key`) does not read the tensors. fsspec paths work too.
- :func:`model_state` is the ``state_dict`` of a Lightning checkpoint, optionally the part under
  one prefix (:func:`extract_prefix`, torchgeo's ``extract_backbone``).
- :func:`load_strict` copies weights into a module after checking every key and shape, with one
  line naming the first mismatch.
- :func:`atomic_write_bytes` writes a file so readers see the old one or the new one, never a
  part (a SIGKILL at any moment leaves the previous complete file).

Training and inference both import this module; it imports neither.
"""

from __future__ import annotations

import os
import pickle
import re
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from torch import nn

from pirec_lightning.errors import CheckpointError, one_line

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "extract_prefix",
    "is_local",
    "load_strict",
    "model_state",
    "read_checkpoint",
    "read_checkpoint_key",
]

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


def is_local(path: str | Path) -> bool:
    """A local path (no URL scheme, or ``file://``)."""
    return "://" not in str(path) or str(path).startswith("file://")


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part.

    Local paths: a temporary file in the same folder, flushed to disk, then ``os.replace``.
    Other fsspec paths: a temporary object next to it, then ``fs.mv`` (object stores publish
    an object only when its upload completes, so the final name never holds a partial file).
    """
    if is_local(path):
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


def read_checkpoint(path: str | Path, role: str = "checkpoint") -> dict[str, Any]:
    """A torch file as a dict, loaded without running pickled code; local files in torch's zip
    format are memory-mapped, so tensors are only read when used.

    Args:
        path: a local path or an fsspec URL.
        role: how the message names the file (``"ckpt_path"``, ``"PI-REC generator"``...).

    Raises:
        CheckpointError: missing, a folder, truncated, not a torch file, not a dict, or holding
            pickled objects other than tensors and plain containers (nothing of it is run).
    """
    path_str = str(path)
    try:
        if is_local(path_str):
            local = Path(path_str.removeprefix("file://")).expanduser()
            if local.is_dir():
                raise CheckpointError(
                    f"{role} {local} is a folder; give a checkpoint file inside it "
                    "(e.g. checkpoints/last.ckpt)"
                )
            if not local.is_file():
                raise CheckpointError(f"{role} file does not exist: {local}")
            with open(local, "rb") as file:
                head = file.read(4)
            # torch files are zip archives, or (older torch, PI-REC's .pth) pickles of protocol 2+
            if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
                raise CheckpointError(
                    f"{role} {local} is not a torch checkpoint file; give a .ckpt written by "
                    "pirec train (checkpoints/last.ckpt)"
                )
            # mmap needs torch's zip format; legacy files (e.g. the original PI-REC .pth) load whole
            mmap = head.startswith(b"PK\x03\x04")
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
        reason = one_line(error)[:160]
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


def extract_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed (torchgeo's extract_backbone)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def model_state(
    checkpoint: Mapping[str, Any],
    source: str | Path,
    prefix: str | None = None,
    fix: str = "give a .ckpt written by pirec train",
    error: type[CheckpointError] = CheckpointError,
) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` of a Lightning checkpoint read by :func:`read_checkpoint`, or
    its part under ``prefix`` (prefix removed).

    Raises:
        error: the checkpoint has no ``state_dict`` (``fix`` says what to pass instead).
    """
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise error(f"{source} is not a Lightning checkpoint (no 'state_dict'); {fix}")
    return dict(state) if prefix is None else extract_prefix(state, prefix)


def load_strict(
    target: nn.Module,
    weights: Mapping[str, torch.Tensor],
    what: str,
    source: str | Path,
    fix: str,
    error: type[CheckpointError] = CheckpointError,
) -> None:
    """Copy ``weights`` into ``target`` after checking every key and every shape.

    Args:
        target: the module receiving the weights.
        weights: its ``state_dict`` as saved.
        what: how the message names the network (``"generator"``...).
        source: the file the weights come from, for the message.
        fix: what the message tells the user to do.
        error: the error class raised.

    Raises:
        error: one line naming the first mismatch and the fix.
    """
    own = target.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    mismatched = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or mismatched:
        if mismatched:
            key = mismatched[0]
            detail = (
                f"{key} has shape {tuple(weights[key].shape)} there, {tuple(own[key].shape)} here"
            )
        else:
            detail = (
                f"{len(missing)} tensors missing and {len(unexpected)} unexpected, "
                f"e.g. {(missing or unexpected)[0]!r}"
            )
        raise error(f"the {what} in {source} has another architecture ({detail}); {fix}")
    target.load_state_dict(dict(weights))
