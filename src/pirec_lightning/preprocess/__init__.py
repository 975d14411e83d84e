"""Tensor-in, tensor-out image operations that make PI-REC's inputs on any device.

Every op comes as a function and an ``nn.Module``, batched with per-sample parameters:
Canny edges, an exact median filter whose cost does not grow with the kernel, batched K-means
color quantization, the color domain (median -> K-means -> median), free-form brush-stroke masks,
edge-pixel dropout, and the hyperparameter-confusion :class:`Preprocessor` the DataModule runs.
"""

from pirec_lightning.preprocess.color import ColorDomain, color_domain
from pirec_lightning.preprocess.confusion import (
    ConfusionConfig,
    Preprocessor,
    evaluation_confusion,
    sample_confusion,
)
from pirec_lightning.preprocess.edges import CannyEdges, canny_edges
from pirec_lightning.preprocess.kmeans import KMeansQuantize, kmeans_quantize
from pirec_lightning.preprocess.masks import (
    EdgeDropout,
    FreeFormMask,
    edge_dropout,
    free_form_masks,
)
from pirec_lightning.preprocess.median import MedianBlur, median_blur

__all__ = [
    "CannyEdges",
    "ColorDomain",
    "ConfusionConfig",
    "EdgeDropout",
    "FreeFormMask",
    "KMeansQuantize",
    "MedianBlur",
    "Preprocessor",
    "canny_edges",
    "color_domain",
    "edge_dropout",
    "evaluation_confusion",
    "free_form_masks",
    "kmeans_quantize",
    "median_blur",
    "sample_confusion",
]
