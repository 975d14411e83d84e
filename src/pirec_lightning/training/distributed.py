"""Scaling out on Lightning's DDP: the GAN strategy, run-time precision, rank helpers.

A GAN step with manual optimization runs two backward passes (discriminator, then generator),
each reaching one network only. Wrapping the whole LightningModule in one DDP (Lightning's
default) all-reduces every bucket of both networks at each backward: each network's gradients go
over the wire twice per step, and it only runs with ``find_unused_parameters``.
:class:`GANDDPStrategy` instead gives each trained network (a phase's ``ddp_networks``) its own
``DistributedDataParallel``, so each network's gradients are all-reduced exactly once per step,
in the backward pass that produced them. Anything else in the module (refinement's frozen
``preliminary_generator``, metrics) is never wrapped and never synchronized.

Cluster environments (Slurm, torchrun, Lightning's own launcher) are detected by Lightning as for
its ``ddp`` strategy.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import _register_ddp_comm_hook
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher
from torch.nn.parallel import DistributedDataParallel

from pirec_lightning.data.ranks import all_gather_object, global_rank
from pirec_lightning.errors import RanksDisagree
from pirec_lightning.models.precision import resolve_precision

__all__ = [
    "GANDDPStrategy",
    "RankAgreement",
    "RanksDisagree",
    "all_gather_object",
    "global_rank",
    "resolve_precision",
]


class GANDDPStrategy(DDPStrategy):
    """Lightning's DDP with one ``DistributedDataParallel`` per trained network.

    A LightningModule opts in by naming its networks in ``ddp_networks`` and keeping a
    ``_ddp_wrappers`` dict (outside the module tree, so checkpoints keep their keys); it calls
    each network through its wrapper while gradients are enabled. A module without
    ``ddp_networks`` is wrapped whole, exactly as by Lightning's ``ddp``.

    Every argument of :class:`~pytorch_lightning.strategies.DDPStrategy` applies
    (``start_method="spawn"``, ``process_group_backend="gloo"``, DDP kwargs...).
    ``find_unused_parameters`` defaults to False: each backward reaches all of its network.
    """

    def __init__(self, *args: Any, find_unused_parameters: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, find_unused_parameters=find_unused_parameters, **kwargs)

    def _configure_launcher(self) -> None:
        # processes started by Slurm or torchrun are already there: launch none, whatever the
        # start_method (Lightning's own spawn launcher would start more)
        assert self.cluster_environment is not None
        if self.cluster_environment.creates_processes_externally:
            self._launcher = _SubprocessScriptLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )
        else:
            super()._configure_launcher()

    def configure_ddp(self) -> None:
        module = self.model
        names = getattr(module, "ddp_networks", None)
        if not isinstance(module, pl.LightningModule) or names is None:
            super().configure_ddp()
            return
        device_ids = self.determine_ddp_device_ids()
        # same as Lightning's wrapping: build DDP on a side stream (CUDA's advice)
        stream = torch.cuda.stream(torch.cuda.Stream()) if device_ids is not None else nullcontext()
        wrappers: dict[str, DistributedDataParallel] = {}
        with stream:
            for name in names:
                wrappers[name] = DistributedDataParallel(
                    getattr(module, name), device_ids=device_ids, **self._ddp_kwargs
                )
        if self.root_device.type == "cuda":  # Lightning registers comm hooks on CUDA only
            for wrapper in wrappers.values():
                _register_ddp_comm_hook(
                    model=wrapper,
                    ddp_comm_state=self._ddp_comm_state,
                    ddp_comm_hook=self._ddp_comm_hook,
                    ddp_comm_wrapper=self._ddp_comm_wrapper,
                )
        module._ddp_wrappers.update(wrappers)

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and getattr(module, "ddp_networks", None) is not None:
            module._ddp_wrappers.clear()
        super().teardown()


class RankAgreement(pl.Callback):
    """Checks at setup, once the process group exists, that every rank holds the same
    ``values`` (phase, run dir, checkpoints...); raises :class:`RanksDisagree` on all ranks
    otherwise, naming the first differing key.

    Ranks started by Slurm or torchrun each compose their own config: a run dir with a time stamp
    may differ between them unless ``hydra.run.dir`` is set explicitly.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {key: None if value is None else str(value) for key, value in values.items()}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        gathered = all_gather_object(self.values)
        for key in self.values:
            seen = [values.get(key) for values in gathered]
            if len(set(seen)) > 1:
                raise RanksDisagree(
                    f"ranks disagree on {key}: {seen} (rank order); give every rank the same "
                    "config, e.g. an explicit hydra.run.dir for jobs started by Slurm or torchrun"
                )
