"""The library's user-facing errors: one vocabulary that every layer imports.

Each error is a mistake or a fault a user can act on. Its message is one line that names the
file or config key, what is wrong and the fix; the command line prints it as ``error: <message>``
and exits with code 2 (see :func:`report`), never with a traceback.

Bugs are not :class:`PirecError`: they keep their traceback.

>>> try:
...     raise ConfigError("data.image_size must be >= 32, got 16")
... except PirecError as error:
...     print(one_line(error))
data.image_size must be >= 32, got 16
"""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_CODE",
    "AppError",
    "ImageTooLarge",
    "OutputError",
    "RanksDisagree",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HandOverError",
    "PirecError",
    "RunDirBusy",
    "RunInterrupted",
    "TrainingDiverged",
    "VGGWeightsUnavailable",
    "one_line",
    "report",
]

#: exit status of the command line for every PirecError
EXIT_CODE = 2


class PirecError(Exception):
    """Base of every error pirec-lightning reports to a user as one line."""


class ConfigError(PirecError, ValueError):
    """A configuration mistake, reported before any work starts."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be read or does not fit the run (``ckpt_path``, ``init_from``)."""


class HandOverError(CheckpointError):
    """A checkpoint that cannot initialize the requested phase (``init_from``)."""


class DataError(PirecError, ValueError):
    """An image folder with nothing usable in it, or too little for the split."""


class VGGWeightsUnavailable(PirecError, RuntimeError):
    """The VGG19 weights are neither on disk nor downloadable."""


class TrainingDiverged(PirecError, RuntimeError):
    """Too many consecutive training steps had a NaN or infinite loss or gradient."""


class RunInterrupted(PirecError, RuntimeError):
    """A phase's Trainer stopped before the end (Ctrl-C, a signal); the run can be resumed.

    ``exit_code`` is the shell's for the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
    """

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunDirBusy(PirecError, RuntimeError):
    """Another live run holds the run dir (its lock file names it)."""


class OutputError(PirecError, OSError):
    """An output that cannot or must not be written: a read-only or missing folder, a file in
    the way, an input file, or an existing file without ``--overwrite``."""


class ImageTooLarge(ValueError):
    """An image with more pixels than the limit, refused before decoding (a decompression
    bomb, or a photo far larger than training needs)."""


class AppError(ValueError):
    """A problem the app's page reports as one line (no model, empty canvas, no refinement
    stage)."""


class RanksDisagree(RuntimeError):
    """Ranks of one run were configured differently (raised on every rank, so none hangs)."""


def one_line(error: BaseException) -> str:
    """The error's message collapsed onto one line (whitespace runs become one space)."""
    return " ".join(str(error).split()) or type(error).__name__


def report(error: PirecError) -> int:
    """Print ``error: <message>`` on stderr and return the exit code: 2, or the error's own
    ``exit_code`` (an interrupted run: 130 or 143)."""
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    return int(getattr(error, "exit_code", EXIT_CODE))
