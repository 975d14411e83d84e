"""One run per run dir: a lock file, ``<run dir>/run.lock``, held while the run trains.

It records who holds it (``{"pid", "host", "since", "job", "command"}``) and is held with an
exclusive ``flock`` on it, which the kernel drops when the process ends however it ends, so a
lock left by a killed run is stale and simply taken over. On a filesystem without ``flock``
(Lustre mounted without it) the record decides: a PID not alive on this host is stale, a PID on
another host is taken as alive, and the same Slurm job (a requeued one) or torchrun run takes its
own lock back.

Only one process of a run holds it: the launching process, or rank 0 of ranks started by Slurm
or torchrun (the other ranks never lock, so they cannot refuse their own run). They read the
record instead: when another live Slurm job or torchrun run holds the dir, and it still does after
:data:`RANK_WAIT_S` (time for their own rank 0 to take over a stale lock), they stop with the same
line as their rank 0 rather than wait for it in the process group. ``phase=all`` holds its top
run dir once; the stages under it, run in the same process, hold nothing more.

>>> with hold_run_dir("runs/x"):  # doctest: +SKIP
...     train(cfg)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pirec_lightning.errors import RunDirBusy
from pirec_lightning.training.distributed import global_rank

__all__ = ["LOCK_FILE", "hold_run_dir", "read_lock"]

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
#: errors of a filesystem that has no flock (then the record in the file decides)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
#: how long a rank other than the launching one gives its rank 0 to take a run dir over before
#: it believes a record naming another job
RANK_WAIT_S = 30.0
#: run dirs this process holds (resolved): nested holds inside them are no-ops
_HELD: set[Path] = set()


def _job() -> str | None:
    """The id shared by every process of this run across restarts: the Slurm job (kept when it
    is requeued) or torchrun's run id when one was given."""
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return f"slurm:{job}"
    run = os.environ.get("TORCHELASTIC_RUN_ID")
    return f"torchrun:{run}" if run and run != "none" else None


def _launching_process() -> bool:
    """This process is the one of its run that holds the run dir: rank 0 (from the launcher's
    environment; the launching process of Lightning's own DDP launcher is rank 0) on node 0."""
    return global_rank() == 0 and os.environ.get("NODE_RANK", "0") in ("", "0")


def read_lock(run_dir: str | Path) -> dict[str, Any] | None:
    """The record of ``<run_dir>/run.lock``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(run_dir).expanduser() / LOCK_FILE).read_text() or "null")
    except (OSError, ValueError):
        return None


def _alive(record: dict[str, Any]) -> bool:
    """Whether the holder may still run: its PID is alive on this host, or it is on another
    host (which cannot be checked from here)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # alive but another user's (or a record we cannot read: keep off)
    return int(record.get("pid", 0)) > 0


def _busy(run_dir: Path, record: dict[str, Any] | None) -> RunDirBusy:
    record = record or {}
    who = f"PID {record.get('pid', '?')} on {record.get('host', '?')}"
    since = f", since {record['since']}" if record.get("since") else ""
    return RunDirBusy(
        f"run dir {run_dir} is in use by another run ({who}{since}); wait for it to end or "
        f"choose another hydra.run.dir (if that run is gone, delete {run_dir / LOCK_FILE})"
    )


def _record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "job": _job(),
        "command": shlex.join(sys.argv),
    }


def _write(fd: int, record: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _read_fd(fd: int) -> dict[str, Any] | None:
    try:
        return json.loads(os.pread(fd, 65536, 0).decode() or "null")
    except (OSError, ValueError):
        return None


def _acquire(run_dir: Path) -> int:
    """Hold ``run_dir``: the locked, written ``run.lock``'s file descriptor.

    Raises:
        RunDirBusy: another live run holds it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_fd(fd)
            os.close(fd)
            raise _busy(run_dir, record) from None
        except OSError as error:
            if error.errno not in _NO_FLOCK:
                os.close(fd)
                raise
            record = _read_fd(fd)  # no flock here: the record decides
            same_job = (
                record is not None
                and record.get("job") not in (None, "")
                and (record.get("job") == _job())
            )
            if record and not same_job and _alive(record):
                os.close(fd)
                raise _busy(run_dir, record) from None
        else:
            try:  # the file we locked must still be the one at that path (not just released)
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                continue
            record = _read_fd(fd)
        if record:
            log.info(
                "run dir %s: taking over the lock of a run that is gone (PID %s on %s)",
                run_dir,
                record.get("pid"),
                record.get("host"),
            )
        _write(fd, _record())
        return fd
    raise _busy(run_dir, read_lock(run_dir))


def _release(run_dir: Path, fd: int) -> None:
    path = run_dir / LOCK_FILE
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    os.close(fd)  # drops the flock


def _other_job(record: dict[str, Any] | None) -> bool:
    """Whether ``record`` names a live holder from another job than this process's (both
    known); never the process that started this one (Lightning's own DDP launcher)."""
    job = _job()
    return (
        record is not None
        and job is not None
        and record.get("job") not in (None, "", job)
        and record.get("pid") != os.getppid()
        and _alive(record)
    )


def _check_other_job(folder: Path) -> None:
    """A rank that does not lock: stop when another job holds ``folder`` (see the module).

    Raises:
        RunDirBusy: the same line as the launching rank's.
    """
    deadline = time.monotonic() + RANK_WAIT_S
    while _other_job(record := read_lock(folder)):
        if time.monotonic() >= deadline:
            raise _busy(folder, record)
        time.sleep(0.5)


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for this run while the block runs (created if needed; the lock file is
    removed on the way out). A no-op in ranks other than the launching one, and inside a run dir
    this process already holds (the stages of ``phase=all``).

    Raises:
        RunDirBusy: another live run holds it; one line naming it (PID, host, since when).
    """
    folder = Path(run_dir).expanduser().resolve()
    if any(h == folder or h in folder.parents for h in _HELD):
        yield
        return
    if not _launching_process():
        _check_other_job(folder)
        yield
        return
    fd = _acquire(folder)
    _HELD.add(folder)
    try:
        yield
    finally:
        _HELD.discard(folder)
        _release(folder, fd)
