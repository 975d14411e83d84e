"""Training entry point: ``train(cfg)`` for code and notebooks, ``main()`` for the command line.

Step counts in the config (``trainer.max_steps``, ``callbacks.model_checkpoint.every_n_train_steps``,
``trainer.val_check_interval``) are GENERATOR steps, i.e. batches. Lightning's ``global_step``
counts every optimizer step (discriminator and generator), so the counts are converted here.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pirec_lightning.checkpoint_io import (
    DONE_FILE,
    AtomicCheckpointIO,
    check_resume_checkpoint,
    finish_phase,
    mark_finished,
    resume_run_dir,
)
from pirec_lightning.config import config_dir, validate_config
from pirec_lightning.console import generator_step_messages, note_overlays, with_progress_bar
from pirec_lightning.data import PIRECDataModule
from pirec_lightning.distributed import (
    GANDDPStrategy,
    RankAgreement,
    global_rank,
    resolve_precision,
)
from pirec_lightning.errors import ConfigError, PirecError, report
from pirec_lightning.phases import PhaseModule, init_from_checkpoint

log = logging.getLogger(__name__)


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_datamodule(cfg: DictConfig) -> PIRECDataModule:
    """The DataModule of ``cfg.data``."""
    return instantiate(cfg.data, _convert_="all")


def build_phase(cfg: DictConfig, **overrides: Any) -> PhaseModule:
    """The phase LightningModule of ``cfg.phase`` with networks from ``cfg.model`` and loss
    weights from ``cfg.loss``; buildable without a Trainer."""
    options = _container(cfg.phase.module)
    phase_class = get_class(options.pop("_target_"))
    if cfg.get("max_bad_steps") is not None:
        options["max_bad_steps"] = int(cfg.max_bad_steps)
    # a phase may set its own loss weights or model options (phase.module.loss / .model, e.g.
    # the refinement's in phase=all) over the run's; plain dicts, so the module saves them as
    # hyperparameters and rebuilds from a checkpoint
    model, loss = (
        _container(OmegaConf.merge(cfg[key], options.pop(key, None) or {}))
        for key in ("model", "loss")
    )
    return phase_class(model=model, loss=loss, **options, **overrides)


def build_callbacks(cfg: DictConfig, steps_per_batch: int) -> list[pl.Callback]:
    """Callbacks of ``cfg.callbacks`` (null entries skipped); step intervals are converted from
    generator steps to Lightning's optimizer-step count. ``model.ema_decay`` adds the
    generator EMA (:class:`~pirec_lightning.ema.GeneratorEMA`)."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        kwargs: dict[str, Any] = {}
        if node.get("every_n_train_steps"):
            kwargs["every_n_train_steps"] = int(node.every_n_train_steps) * steps_per_batch
        log.debug("callback %s", name)
        callbacks.append(instantiate(node, **kwargs))
    ema_decay = OmegaConf.select(cfg, "model.ema_decay")
    if ema_decay is not None:
        from pirec_lightning.ema import GeneratorEMA

        callbacks.append(GeneratorEMA(float(ema_decay)))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Loggers of ``cfg.logger`` (null entries skipped)."""
    return [
        instantiate(node)
        for node in (cfg.get("logger") or {}).values()
        if node is not None and "_target_" in node
    ]


def build_trainer(
    cfg: DictConfig, steps_per_batch: int, callbacks: list[pl.Callback], loggers: list[Any]
) -> pl.Trainer:
    """The Trainer of ``cfg.trainer`` with ``max_steps`` converted to optimizer steps."""
    kwargs: dict[str, Any] = {"callbacks": callbacks, "logger": loggers or False}
    if cfg.trainer.get("plugins") is None:  # atomic saves, weights-only loads
        kwargs["plugins"] = [AtomicCheckpointIO()]
    max_steps = cfg.trainer.get("max_steps")
    if max_steps is not None and max_steps > 0:
        kwargs["max_steps"] = int(max_steps) * steps_per_batch
    devices = cfg.trainer.get("devices", 1)
    several = devices in (-1, "-1", "auto") or (isinstance(devices, int) and devices > 1)
    several = several or (not isinstance(devices, int | str) and len(devices) > 1)
    if several and cfg.trainer.get("strategy", "auto") == "auto":
        # one DDP per network: each GAN backward pass reaches (and all-reduces) one network only
        kwargs["strategy"] = GANDDPStrategy()
    kwargs["precision"] = resolve_precision(cfg.trainer.get("precision"), cfg.trainer.accelerator)
    return instantiate(cfg.trainer, **kwargs)


def _check_vgg(cfg: DictConfig) -> None:
    """``loss.vgg=imagenet`` must find its weights before any work starts."""
    from pirec_lightning.models.losses import VGGWeightsUnavailable, resolve_vgg19_weights

    wants = cfg.loss.get("perceptual", 0) > 0 or cfg.loss.get("style", 0) > 0
    if cfg.loss.get("vgg") == "imagenet" and wants:
        try:
            resolve_vgg19_weights(cfg.loss.get("vgg_weights"))
        except VGGWeightsUnavailable as error:
            raise ConfigError(" ".join(str(error).split())) from error


class FinalCheckpoint(pl.Callback):
    """Make ``last.ckpt`` hold the final weights: Lightning skips the end-of-training save when
    an interval save already happened, even if steps were taken since. A callback, so it runs in
    every training process (with spawned DDP the calling process does not train)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        if callback is None or callback.dirpath is None:
            return
        path = Path(callback.dirpath) / "last.ckpt"
        stale = trainer.global_step != getattr(callback, "_last_global_step_saved", -1)
        # saving is collective: every rank follows rank 0's view of the file
        if trainer.strategy.broadcast(stale or not path.exists()):
            trainer.save_checkpoint(path)


def _last_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if callback is None or callback.dirpath is None:
        return None
    path = Path(callback.dirpath) / "last.ckpt"
    return str(path) if path.is_file() else (getattr(callback, "last_model_path", None) or None)


def _check_init_from(cfg: DictConfig) -> None:
    """Refinement must start from a generating checkpoint; other phases may start anywhere."""
    phase, init_from = cfg.phase.name, cfg.get("init_from")
    if phase == "refinement" and init_from is None and cfg.get("ckpt_path") is None:
        raise ConfigError(
            "refinement starts from a generating checkpoint: "
            "set init_from=<generating run>/checkpoints/last.ckpt (or use phase=all)"
        )
    if phase == "refinement" and init_from is not None:
        from pirec_lightning.checkpoints import load_weights_only

        source = load_weights_only(init_from, "init_from checkpoint").get("pirec_phase")
        if source not in ("generating", "refinement"):
            raise ConfigError(
                f"refinement starts from a generating checkpoint, but {init_from} comes from "
                f"the {source or 'unknown'} phase; pass a generating run's last.ckpt"
            )


def train_phase(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train the single phase ``cfg.phase.name`` (see :func:`train`)."""
    validate_config(cfg)
    output_dir = Path(OmegaConf.select(cfg, "paths.output_dir")).expanduser()
    cfg, finished = resume_run_dir(cfg, output_dir)  # the same run dir again
    if finished is not None:
        return finished, {
            "cfg": cfg,
            "model": None,
            "trainer": None,
            "loggers": [],
            "last_ckpt": cfg.ckpt_path,
            "finished_before": True,
        }
    log.info("run dir: %s", output_dir)
    note_overlays(cfg)
    init_from = cfg.get("init_from")
    _check_init_from(cfg)
    _check_vgg(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.files()  # scan the images now: a data problem stops before any training output
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    model = build_phase(cfg)
    if cfg.get("ckpt_path") is not None:
        check_resume_checkpoint(cfg.ckpt_path, model, cfg.phase.name)
    if init_from is not None and cfg.get("ckpt_path") is None:
        copied = init_from_checkpoint(model, init_from)
        if hasattr(model, "after_init_from"):  # a residual refinement starts as the identity
            model.after_init_from(init_from)
        log.info("%s: weights from %s (%s)", cfg.phase.name, init_from, copied)
    elif cfg.phase.name != "imitation" and cfg.get("ckpt_path") is None:
        warnings.warn(
            f"{cfg.phase.name} is training from scratch: PI-REC starts it from the previous "
            "phase's weights (init_from=<checkpoint>, or phase=all)",
            stacklevel=2,
        )
    steps_per_batch = model.optimizer_steps_per_batch
    callbacks = with_progress_bar(build_callbacks(cfg, steps_per_batch), cfg)
    callbacks.append(FinalCheckpoint())
    # every rank must train the same phase into the same folder from the same checkpoints
    agreed = ("phase.name", "paths.output_dir", "ckpt_path", "init_from")
    callbacks.append(RankAgreement({key: OmegaConf.select(cfg, key) for key in agreed}))
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, steps_per_batch, callbacks, loggers)

    with warnings.catch_warnings(), generator_step_messages(steps_per_batch):
        # saving the post-step weights every N steps is what we want with manual optimization
        warnings.filterwarnings("ignore", "Using ModelCheckpoint with manual optimization")
        # refinement's frozen preliminary generator is in eval mode on purpose
        warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
        # raised inside Lightning itself, nothing a user can act on
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)")
        # Ctrl-C: Lightning shuts down gracefully and exits; `last.ckpt` holds the last save
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    last = _last_checkpoint(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    finish_phase(trainer, model, last, output_dir)  # diverged or interrupted: never handed on
    if global_rank() == 0:  # one writer, whatever the number of ranks
        mark_finished(output_dir, cfg.phase.name, metrics, trainer)
    log.info("run dir: %s (last checkpoint %s)", output_dir, last)
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "trainer": trainer,
        "callbacks": callbacks,
        "loggers": loggers,
        "last_ckpt": last,
    }
    return metrics, objects


def stage_config(cfg: DictConfig, name: str, run_dir: Path) -> DictConfig:
    """The single-phase config of stage ``name`` of ``phase=all``, writing under run_dir/name."""
    stage = copy.deepcopy(cfg)
    with open_dict(stage):
        stage.phase = cfg.phase.stages[name]
        if stage.phase.get("max_steps") is not None:
            stage.trainer.max_steps = stage.phase.max_steps
        stage.paths.output_dir = str(run_dir / name)
        stage.ckpt_path = None
        stage.init_from = None
    return stage


def train_all(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """imitation -> generating -> refinement, each in ``<run dir>/<phase>/``, handing over
    ``last.ckpt``; finished phases (``finished.json``) are skipped, an unfinished one resumes."""
    if cfg.get("ckpt_path") is not None:
        raise ConfigError(
            "phase=all resumes by itself: re-run with the same hydra.run.dir instead of ckpt_path"
        )
    run_dir = Path(OmegaConf.select(cfg, "paths.output_dir")).expanduser()
    names = list(cfg.phase.stages)
    stages = {name: stage_config(cfg, name, run_dir) for name in names}
    for stage in stages.values():  # every stage's config is checked before any work
        validate_config(stage)
    metrics: dict[str, float] = {}
    objects: dict[str, Any] = {"cfg": cfg, "phases": {}}
    previous: str | None = cfg.get("init_from")
    # the plan is read from the run dir before any training, so every rank (which all start
    # before any of them can write) decides the same; each phase checks the agreement again
    finished = {name: (run_dir / name / DONE_FILE).is_file() for name in names}
    started = {name: (run_dir / name / "checkpoints" / "last.ckpt").is_file() for name in names}
    for name in names:
        stage, folder = stages[name], run_dir / name
        last = folder / "checkpoints" / "last.ckpt"
        done = folder / DONE_FILE
        if finished[name]:
            log.info("phase %s already finished in %s: skipping", name, folder)
            stage_metrics = json.loads(done.read_text())["metrics"]
        else:
            with open_dict(stage):
                if started[name]:
                    log.info("phase %s: resuming from %s", name, last)
                    stage.ckpt_path = str(last)
                stage.init_from = previous
            stage_metrics, stage_objects = train_phase(stage)
            objects["phases"][name] = stage_objects
            _finish_wandb(stage_objects["loggers"])
        metrics.update({f"{name}/{k}": v for k, v in stage_metrics.items()})
        previous = str(last)
    objects["last_ckpt"] = previous
    return metrics, objects


def _finish_wandb(loggers: list[Any]) -> None:
    """Close W&B runs so the next phase of ``phase=all`` starts its own run."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train ``cfg.phase`` and return ``(metrics, objects)``; usable without the command line.

    ``metrics`` holds the last value of every logged metric (floats; prefixed ``<phase>/`` for
    ``phase=all``). ``objects`` holds the ``cfg``, ``datamodule``, ``model``, ``trainer``,
    ``callbacks``, ``loggers`` and the ``last_ckpt`` path (for ``phase=all``: ``phases``, one
    such dict per phase trained in this call, and the final ``last_ckpt``).

    Raises:
        ConfigError: before any work when the config is wrong.
    """
    if cfg.phase.get("name") == "all":
        return train_all(cfg)
    return train_phase(cfg)


def monitored_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``cfg.optimized_metric`` (default ``val/psnr``) in ``metrics``; for
    ``phase=all``, the last phase's. None when ``optimized_metric`` is null.

    Raises:
        ConfigError: the metric was not logged (names the ones that were).
    """
    name = cfg.get("optimized_metric", "val/psnr")
    if name is None:
        return None
    if cfg.phase.get("name") == "all" and name not in metrics:
        name = f"{list(cfg.phase.stages)[-1]}/{name}"
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric {name!r} was not logged; logged: {', '.join(sorted(metrics))}"
        )
    return metrics[name]


def _run(cfg: DictConfig) -> float | None:
    try:
        metrics, objects = train(cfg)
        # one logger run per job: a multirun's next job in this process starts its own
        _finish_wandb(objects.get("loggers", []))
        return monitored_metric(cfg, metrics)
    except PirecError as error:
        sys.exit(report(error))


def main() -> float | None:
    """``python train.py [overrides]``: train and return the ``optimized_metric`` (default
    ``val/psnr``) for Hydra sweepers."""
    from pirec_lightning.config_checks import prepare_overrides

    try:  # Hydra's own errors about the command line, as one line
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    except PirecError as error:
        sys.exit(report(error))
    # built here, not at import: importing this module must work without a conf/ folder
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(_run)
    return app()


if __name__ == "__main__":
    main()
