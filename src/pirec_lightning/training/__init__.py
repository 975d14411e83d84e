"""Training: a phase run from its Hydra config, the ``phase=all`` plan, resuming, callbacks,
EMA and the distributed strategy.

>>> from pirec_lightning.config import compose_config
>>> from pirec_lightning.training import train
>>> metrics, objects = train(compose_config(["debug=tiny"], output_dir="/tmp/run"))  # doctest: +SKIP
"""

from pirec_lightning.training.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_phase,
    build_trainer,
)
from pirec_lightning.training.run import main, monitored_metric, train

__all__ = [
    "build_callbacks",
    "build_datamodule",
    "build_loggers",
    "build_phase",
    "build_trainer",
    "main",
    "monitored_metric",
    "train",
]
