"""What the console says during training, in the units and words of the config.

Lightning counts both optimizers of a GAN step, so its own stop message reads
"`max_steps=8` reached" for ``trainer.max_steps=4`` and its default progress bar shows
"Epoch 0/-2" for ``max_epochs=-1``; these helpers make both speak in generator steps, and say
when a debug overlay replaced the chosen trainer.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

__all__ = ["generator_step_messages", "note_overlays"]

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

    if not HydraConfig.initialized():
        return
    choices = HydraConfig.get().runtime.choices
    debug, trainer = choices.get("debug"), choices.get("trainer")
    accelerator = cfg.trainer.get("accelerator")
    if debug and trainer not in (None, "cpu", "ddp_cpu") and accelerator == "cpu":
        log.warning(
            "debug=%s runs on the CPU: it overrides trainer=%s (trainer.accelerator=cpu); "
            "add trainer.accelerator=gpu after it to debug on the GPU",
            debug,
            trainer,
        )
