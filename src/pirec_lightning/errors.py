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
    "RanksDisagree",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HandOverError",
    "PirecError",
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
    """A phase's Trainer stopped before the end (Ctrl-C, a signal); the run can be resumed."""


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
    """Print ``error: <message>`` on stderr and return the exit code (2)."""
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    return EXIT_CODE
