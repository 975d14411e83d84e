"""Inference: :class:`Reconstructor` (the one pipeline object shared by Python, the CLI, the app and
the notebooks), input conversion, folders of PI-REC pairs, export and evaluation.

>>> from pirec_lightning.inference import Reconstructor
>>> rec = Reconstructor.from_checkpoint("runs/qs/refinement/checkpoints/last.ckpt")  # doctest: +SKIP
"""

from pirec_lightning.inference.reconstructor import Reconstructor, StagePipeline, save_images

__all__ = ["Reconstructor", "StagePipeline", "save_images"]
