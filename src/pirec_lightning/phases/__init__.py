"""LightningModules of PI-REC's training phases; they share one generator architecture."""

from pirec_lightning.phases.base import PhaseModule
from pirec_lightning.phases.generating import GeneratingPhase
from pirec_lightning.phases.handover import HandOverError, init_from_checkpoint
from pirec_lightning.phases.imitation import ImitationPhase
from pirec_lightning.phases.refinement import RefinementPhase

#: the phases in training order
PHASES: dict[str, type[PhaseModule]] = {
    "imitation": ImitationPhase,
    "generating": GeneratingPhase,
    "refinement": RefinementPhase,
}

__all__ = [
    "PHASES",
    "GeneratingPhase",
    "HandOverError",
    "ImitationPhase",
    "PhaseModule",
    "RefinementPhase",
    "init_from_checkpoint",
]
