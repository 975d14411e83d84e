"""LightningModules of PI-REC's training phases; they share one generator architecture."""

from pirec_lightning.phases.base import PhaseModule
from pirec_lightning.phases.imitation import ImitationPhase

PHASES: dict[str, type[PhaseModule]] = {"imitation": ImitationPhase}

__all__ = ["PHASES", "ImitationPhase", "PhaseModule"]
