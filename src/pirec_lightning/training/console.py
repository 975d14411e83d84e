"""What the console says during training, in the units and words of the config.

Lightning counts both optimizers of a GAN step, so its own stop message reads
"`max_steps=8` reached" for ``trainer.max_steps=4`` and its default progress bar shows
"Epoch 0/-2" for ``max_epochs=-1``; these helpers make both speak in generator steps, say
when a debug overlay replaced the chosen trainer, and keep Lightning's product tips away.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

from omegaconf import DictConfig

from pirec_lightning.config import hydra_run

__all__ = ["generator_step_messages", "note_overlays", "quiet_lightning_tips"]

log = logging.getLogger(__name__)

_LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)
_STOPPED = re.compile(r"`Trainer.fit` stopped: `max_steps=(\d+)` reached\.")


class _GeneratorSteps(logging.Filter):
    def __init__(self, per_batch: int) -> None:
        super().__init__()
        self.per_batch = per_batch

    def filter(self, record: logging.LogRecord) -> bool:
        match = _STOPPED.fullmatch(record.getMessage())
        if match:
            steps = int(match.group(1)) // self.per_batch
            record.msg, record.args = f"training stopped: trainer.max_steps={steps} reached", ()
        return True


class _NoTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... litlogger", "... litmodels")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_NO_TIPS = _NoTips()


def quiet_lightning_tips() -> None:
    """Keep Lightning's product tips off the console (every Trainer prints one); idempotent."""
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).addFilter(_NO_TIPS)


@contextlib.contextmanager
def generator_step_messages(per_batch: int) -> Iterator[None]:
    """While active, Lightning's "max_steps reached" message counts generator steps."""
    step_filter = _GeneratorSteps(per_batch)
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    for logger in loggers:
        logger.addFilter(step_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(step_filter)


def note_overlays(cfg: DictConfig) -> None:
    """Say in the log when a debug overlay replaced the trainer the user chose."""

    hydra = hydra_run(cfg)
    if hydra is None:
        return
    choices = hydra.runtime.choices
    debug, trainer = choices.get("debug"), choices.get("trainer")
    accelerator = cfg.trainer.get("accelerator")
    if debug and trainer not in (None, "cpu", "ddp_cpu") and accelerator == "cpu":
        log.warning(
            "debug=%s runs on the CPU: it overrides trainer=%s (trainer.accelerator=cpu); "
            "add trainer.accelerator=gpu after it to debug on the GPU",
            debug,
            trainer,
        )
