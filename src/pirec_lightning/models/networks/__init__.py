"""Plain ``nn.Module`` networks of PI-REC: the generator, the discriminator and their blocks."""

from pirec_lightning.models.networks.blocks import ResnetBlock, init_weights
from pirec_lightning.models.networks.discriminator import Discriminator
from pirec_lightning.models.networks.generator import Generator

__all__ = ["Discriminator", "Generator", "ResnetBlock", "init_weights"]
