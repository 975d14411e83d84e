"""Reconstruction from edges and color domains: one object shared by Python, the CLI and the app.

>>> rec = Reconstructor.from_checkpoint("runs/quickstart/refinement/checkpoints/last.ckpt")  # doctest: +SKIP
>>> image = rec.reconstruct("4_edge.png", "4_cd.png", output_type="pil")[0]  # doctest: +SKIP
>>> image = rec.from_photo("photo.jpg", output_type="pil")[0]  # doctest: +SKIP
>>> fast = Reconstructor.from_checkpoint("last.ckpt", compile=True)  # doctest: +SKIP

:class:`Reconstructor` is a LightningModule (so an ``nn.Module``): ``trainer.predict`` runs it over
a DataLoader of ``{"edge", "color_domain"}`` batches on any number of devices.

``compile=True`` runs the two stages (padding, both networks, cropping: one
:class:`StagePipeline`) through ``torch.compile``, lazily: the first call of each input shape
compiles (seconds to a minute), later calls of that shape reuse it. Shapes are static
(``dynamic=False``: each (batch, height, width) gets its own specialised graph, which CUDA graphs
need); after :data:`MAX_COMPILED_SHAPES` shapes, new shapes run eager with one warning, so a stream
of odd sizes never compiles without end. ``compile_mode=None`` picks the mode by device
(:data:`AUTO_COMPILE_MODES`): ``reduce-overhead`` on CUDA (CUDA graphs: a replay per fixed shape,
no launch overhead; outputs are copied out of the graph's memory), the default mode elsewhere. For
many shapes on CUDA pass ``compile_mode="max-autotune-no-cudagraphs"`` or ``"default"``.
``self.generator`` and ``self.refiner`` stay the eager modules (checkpoints and
:func:`~pirec_lightning.inference.export.export` see no difference).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from pirec_lightning.checkpoints import extract_prefix, model_state, read_checkpoint
from pirec_lightning.errors import CheckpointError, OutputError, one_line
from pirec_lightning.images import open_image
from pirec_lightning.inference.inputs import (
    EDGE_THRESHOLD,
    ImageInput,
    edge_names,
    to_edge_batch,
    to_image_batch,
    to_output,
    warn_unlikely_edges,
)
from pirec_lightning.models.networks.compile import COMPILE_MODES
from pirec_lightning.models.networks.loading import (
    build_generator,
    generator_settings,
    pirec_settings,
    read_pirec_generator,
)
from pirec_lightning.models.networks.residual import ResidualRefiner
from pirec_lightning.models.precision import autocast_dtype
from pirec_lightning.preprocess.confusion import ConfusionConfig, Preprocessor
from pirec_lightning.preprocess.drawn import prepare_edges
from pirec_lightning.pretrained import DEFAULT_MODEL, PREFIX, read_pretrained

__all__ = [
    "AUTO_COMPILE_MODES",
    "MAX_COMPILED_SHAPES",
    "MAX_PHOTO_SIDE",
    "MIN_SIDE",
    "RUN_SIZES",
    "Reconstructor",
    "StagePipeline",
    "check_input_size",
    "check_outputs",
    "check_writable",
    "resize_inputs",
    "resize_output",
    "resolve_device",
    "run_shape",
    "save_images",
]

#: the smallest image side the networks take: they halve the size twice (inputs are padded to a
#: multiple of 4) and their dilated residual blocks pad by 2, so the middle needs 3 pixels
MIN_SIDE = 9

#: where a model runs on an input larger than its training size (``run_size``): ``model``: the
#: inputs are reduced to the model's size (shorter side), run, and the output resized back to the
#: input's size; ``input``: at the input's own size. The default is measured: see
#: docs/inference.md ("Input size") and ``benchmarks/input_size.py``
RUN_SIZES = ("model", "input")

#: a photo is read with its longer side at most this many pixels (large photos are reduced while
#: decoding); outputs of :meth:`Reconstructor.from_photo` have that size
MAX_PHOTO_SIDE = 1024

#: ``torch.compile`` mode by device type for ``compile_mode=None``; other devices: the default mode
AUTO_COMPILE_MODES: dict[str, str] = {"cuda": "reduce-overhead"}


def compile_errors() -> tuple[type[BaseException], ...]:
    """What a compilation that cannot work raises (no C++ compiler, no Triton, an unsupported
    op): the Reconstructor then runs eager. Imported when needed: Inductor takes seconds."""
    import torch._dynamo.exc as dynamo
    import torch._inductor.exc as inductor

    return (
        dynamo.BackendCompilerFailed,
        dynamo.InternalTorchDynamoError,
        dynamo.Unsupported,
        inductor.InductorError,
    )


#: input shapes (batch, height, width, refine) a compiled Reconstructor compiles; later new
#: shapes run eager (one warning), so recompilation stays bounded
MAX_COMPILED_SHAPES = 8


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``; None: CUDA when available, else the
    CPU) checked against this machine.

    Raises:
        ValueError: not a device name, or a device this machine does not have (one line).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {str(device)!r}; use --device cpu, cuda or cuda:N"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r}: this machine has no CUDA GPU that PyTorch can use; "
                "use --device cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"device {str(device)!r}: this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(device)!r}: MPS is not available here; use --device cpu")
    elif parsed.type != "cpu":
        raise ValueError(
            f"device {str(device)!r} is not supported; use --device cpu, cuda or cuda:N"
        )
    return parsed


def run_shape(height: int, width: int, model_size: int | None, run_size: str) -> tuple[int, int]:
    """The (height, width) a model of ``model_size`` px runs an input of ``height`` x ``width``
    at: the input's own size, or for ``run_size="model"`` and an input whose shorter side is
    larger than ``model_size``, the input scaled so its shorter side is ``model_size``."""
    if run_size not in RUN_SIZES:
        raise ValueError(f"unknown run_size {run_size!r}; valid: {', '.join(RUN_SIZES)}")
    shorter = min(height, width)
    if run_size == "input" or not model_size or shorter <= model_size:
        return height, width
    scale = model_size / shorter
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_inputs(edge: Tensor, color: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Edges (B, 1, H, W) in {0, 1} and color domains (B, 3, H, W) in [0, 1] at ``size``: both
    area-averaged; an edge pixel is one whose area holds more than 59/255 of line (the threshold
    an edge file is read with), so a line keeps its width relative to the image."""
    if tuple(edge.shape[-2:]) == tuple(size):
        return edge, color
    coverage = F.interpolate(edge.float(), size=size, mode="area")
    edge = (coverage > EDGE_THRESHOLD / 255).to(edge.dtype)
    return edge, F.interpolate(color, size=size, mode="area").clamp(0, 1)


def resize_output(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Images (B, 3, h, w) in [0, 1] at ``size`` (bicubic, antialiased when shrinking)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(
        images, size=size, mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)


def check_same_size(edge: Tensor, color: Tensor) -> None:
    """Raises ValueError (one line, pixel sizes as ``WxH``) when an edge batch and a color
    batch differ in size or count."""
    if edge.shape[-2:] != color.shape[-2:]:
        (eh, ew), (ch, cw) = edge.shape[-2:], color.shape[-2:]
        raise ValueError(
            f"edge {ew}x{eh} and color {cw}x{ch} must be the same size: resize one to the "
            "other's size"
        )
    if edge.shape[0] != color.shape[0]:
        raise ValueError(
            f"{edge.shape[0]} edge images and {color.shape[0]} color images: give as many of each"
        )


def check_input_size(height: int, width: int, name: str = "the image") -> None:
    """Raises ValueError (one line, naming ``name``) for an image smaller than
    :data:`MIN_SIDE` on a side, which the networks cannot take."""
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"{name} is {width}x{height} px, too small: the model needs at least "
            f"{MIN_SIDE}x{MIN_SIDE} px (minimum size)"
        )


class StagePipeline(nn.Module):
    """The bare two-stage computation, scriptable and exportable (TorchScript, ONNX).

    ``forward(edge, color)``: edge (B, 1, H, W) in {0, 1} and color domain (B, 3, H, W) in
    [0, 1], any B, H, W -> final image (B, 3, H, W) in [0, 1]. The inputs are padded to a
    multiple of 4 (edges with 0, colors by replication) and the outputs cropped back.
    """

    __constants__ = ["two_stage"]  # noqa: RUF012 - TorchScript reads it

    def __init__(self, generator: nn.Module, refiner: nn.Module | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.two_stage = refiner is not None
        # a module either way, so TorchScript sees one type; unused without a refiner
        self.refiner = refiner if refiner is not None else nn.Identity()

    def forward(self, edge: Tensor, color: Tensor) -> Tensor:
        return self.stages(edge, color, True)[0]

    @torch.jit.export
    def stages(self, edge: Tensor, color: Tensor, refine: bool = True) -> tuple[Tensor, Tensor]:
        """``(final, first stage)``; final is the first stage without refinement."""
        height, width = edge.shape[-2], edge.shape[-1]
        # the generator halves the size twice: pad to a multiple of 4 (a literal for TorchScript)
        pad = [0, (4 - width % 4) % 4, 0, (4 - height % 4) % 4]
        edge = F.pad(edge, pad)  # no lines in the margin
        color = F.pad(color, pad, mode="replicate")
        first = self.generator(torch.cat([color, edge], dim=1))
        final = first
        if refine and self.two_stage:
            final = self.refiner(torch.cat([first, edge], dim=1))
        return final[:, :, :height, :width], first[:, :, :height, :width]


class Reconstructor(pl.LightningModule):
    """PI-REC's reconstruction: edge + color domain -> first stage (``generator``), optionally
    refined by a second stage (``refiner``).

    Args:
        generator: the first stage (the generating phase's generator): (B, 4, H, W) -> (B, 3, H, W).
        refiner: the second stage (the refinement phase's generator), or None for one stage.
        confusion: the color-domain settings the model was trained with (a
            :class:`ConfusionConfig` or a saved ``data.confusion``); :meth:`from_photo` uses its
            evaluation values scaled to each image.
        image_size: the training image size, for information (any size is reconstructed).
        edge_polarity: default polarity of edge inputs (``auto``, ``white-on-black``,
            ``black-on-white``).
        preprocess_backend: the ops :meth:`from_photo` uses (``engine`` or ``kornia``).
        compile: run the stages through ``torch.compile`` (lazily, on the first call of each
            input shape; see the module's docstring). Outputs equal eager within ~1e-4.
        compile_mode: ``torch.compile``'s mode; None: by device (:data:`AUTO_COMPILE_MODES`).
        channels_last: weights and inputs in ``torch.channels_last`` memory format (off by
            default: no faster on the CPU, see docs/performance.md).
        run_size: ``model`` (default): an input larger than ``image_size`` (shorter side) is
            reduced to it, run, and the output resized back to the input's size; ``input``:
            run at the input's own size (see :data:`RUN_SIZES`; measured in docs/inference.md).

    The modules are frozen and in eval mode. Inputs of any size are padded to a multiple of 4
    and cropped back.
    """

    def __init__(
        self,
        generator: nn.Module,
        refiner: nn.Module | None = None,
        confusion: ConfusionConfig | Mapping | None = None,
        image_size: int | None = None,
        edge_polarity: str = "auto",
        preprocess_backend: str = "engine",
        compile: bool = False,
        compile_mode: str | None = None,
        channels_last: bool = False,
        run_size: str = "model",
    ) -> None:
        super().__init__()
        if run_size not in RUN_SIZES:
            raise ValueError(f"run_size must be one of {', '.join(RUN_SIZES)}, got {run_size!r}")
        if compile_mode not in COMPILE_MODES:
            names = ", ".join("None" if m is None else repr(m) for m in COMPILE_MODES)
            raise ValueError(f"compile_mode must be one of {names}, got {compile_mode!r}")
        self.generator = generator
        self.refiner = refiner
        self.preprocessor = Preprocessor(None, confusion, enabled=False, backend=preprocess_backend)
        self.confusion = self.preprocessor.confusion
        self.image_size = image_size
        self.edge_polarity = edge_polarity
        #: ``model`` or ``input``: where inputs larger than ``image_size`` run (:data:`RUN_SIZES`)
        self.run_size = run_size
        #: the training data settings of a checkpoint (``pirec evaluate`` finds its test split)
        self.data_settings: dict[str, Any] = {}
        #: ``torch.compile`` the stages (see :meth:`stages_forward`)
        self.use_compile = bool(compile)
        self.compile_mode = compile_mode
        self.channels_last = bool(channels_last)
        #: the input shapes compiled so far: ``((batch, 1, height, width), refine)``
        self.compiled_shapes: list[tuple[tuple[int, ...], bool]] = []
        self._compiled: tuple[Any, ...] | None = None  # (generator, refiner, mode, function)
        self._warned_shapes = False
        self.requires_grad_(False)
        self.eval()
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # ---------------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None, **options: Any
    ) -> Reconstructor:
        """From a pirec-lightning checkpoint: refinement -> two stages (its
        ``preliminary_generator`` then its ``generator``), generating -> one stage. A model's
        ``.safetensors`` file (a bundled model, or one written by ``write_pretrained``) loads
        too.

        The architecture and the color-domain settings come from the checkpoint's saved
        hyperparameters. ``device``: default CUDA when available, else CPU. ``options``:
        ``compile``, ``compile_mode``, ``channels_last``, ``run_size`` (see :class:`Reconstructor`).

        Raises:
            CheckpointError: missing/unsafe file, an imitation checkpoint, or foreign weights.
        """
        device = resolve_device(device)  # before reading: a device this machine lacks
        if is_safetensors(path):  # a bundled model's file, given by its path
            return cls.from_checkpoint_dict(read_safetensors_model(path), path, device, **options)
        return cls.from_checkpoint_dict(
            read_checkpoint(path, "checkpoint"), path, device, **options
        )

    @classmethod
    def pretrained(
        cls, name: str | None = None, device: str | torch.device | None = None, **options: Any
    ) -> Reconstructor:
        """A model bundled with the package (``None``: :data:`~pirec_lightning.pretrained.DEFAULT_MODEL`;
        :func:`~pirec_lightning.pretrained.list_models` names them), with no training.
        ``options``: as :meth:`from_checkpoint`.

        Raises:
            CheckpointError: unknown name (the message lists the bundled models).
        """
        name = name or DEFAULT_MODEL
        device = resolve_device(device)
        return cls.from_checkpoint_dict(read_pretrained(name), f"{PREFIX}{name}", device, **options)

    @classmethod
    def from_checkpoint_dict(
        cls,
        checkpoint: Mapping[str, Any],
        path: str | Path,
        device: str | torch.device | None = None,
        **options: Any,
    ) -> Reconstructor:
        """From a checkpoint already read (see :meth:`from_checkpoint`); ``path`` names it in
        messages; ``options``: ``compile``, ``compile_mode``, ``channels_last``, ``run_size``."""
        state = model_state(
            checkpoint,
            path,
            fix="original PI-REC weights load with Reconstructor.from_pirec / pirec reconstruct "
            "--pirec-generator",
        )
        phase = checkpoint.get("pirec_phase")
        if phase is None and any(k.startswith("preliminary_generator.") for k in state):
            phase = "refinement"
        if phase == "imitation":
            raise CheckpointError(
                f"{path} is an imitation checkpoint, which only fills holes in photos; pass the "
                "generating or refinement phase's checkpoint (e.g. <run>/refinement/checkpoints/"
                "last.ckpt)"
            )
        if phase not in ("generating", "refinement"):
            raise CheckpointError(
                f"{path} does not say which phase wrote it (no 'pirec_phase'); pass a generating "
                "or refinement checkpoint written by pirec-lightning"
            )
        hparams = checkpoint.get("hyper_parameters") or {}
        node = (hparams.get("model") or {}).get("generator")
        # the saved config rebuilds the network; shapes are the fallback for hand-made files
        settings = (
            generator_settings(node)
            if node
            else pirec_settings(extract_prefix(state, "generator."))
        )
        source = str(path)
        if phase == "refinement":
            first = build_generator(
                settings, extract_prefix(state, "preliminary_generator."), source
            )
            refiner = build_generator(settings, extract_prefix(state, "generator."), source)
            if hparams.get("residual"):  # trained to paint a correction of the first stage
                refiner = ResidualRefiner(refiner)
        else:
            first, refiner = (
                build_generator(settings, extract_prefix(state, "generator."), source),
                None,
            )
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        model = cls(
            first,
            refiner,
            confusion=data.get("confusion"),
            image_size=data.get("image_size"),
            preprocess_backend=data.get("preprocess_backend", "engine"),
            **options,
        )
        model.data_settings = dict(data)
        return model.to(resolve_device(device))

    @classmethod
    def from_pirec(
        cls,
        generator_path: str | Path,
        refiner_path: str | Path | None = None,
        device: str | torch.device | None = None,
        **options: Any,
    ) -> Reconstructor:
        """From the original PI-REC release: ``G_Model_gen_*.pth`` (first stage) and optionally
        ``R_Model_gen_*.pth`` (refinement), each ``{'iteration': int, 'generator': state_dict}``.

        The color-domain settings are PI-REC's defaults (:class:`ConfusionConfig`); ``options``:
        ``compile``, ``compile_mode``, ``channels_last``, ``run_size`` (see :class:`Reconstructor`).
        """
        device = resolve_device(device)
        generator, _ = read_pirec_generator(generator_path)
        refiner = read_pirec_generator(refiner_path)[0] if refiner_path is not None else None
        return cls(generator, refiner, image_size=128, **options).to(device)

    # ------------------------------------------------------------------------------- the model
    @property
    def stages(self) -> int:
        """1 (first stage only) or 2 (with refinement)."""
        return 1 if self.refiner is None else 2

    def train(self, mode: bool = True) -> Reconstructor:
        return super().train(False)  # inference only: instance norm and all stay in eval mode

    def forward(self, edge: Tensor, color: Tensor, refine: bool = True) -> Tensor:
        """Final image (B, 3, H, W) in [0, 1] from edge (B, 1, H, W) in {0, 1} and color domain
        (B, 3, H, W) in [0, 1]; any H, W (padded to a multiple of 4 and cropped back)."""
        return self.stages_forward(edge, color, refine)[0]

    def stages_forward(
        self, edge: Tensor, color: Tensor, refine: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(final, first stage)``, each (B, 3, H, W) in [0, 1]; final is the first stage when
        ``refine`` is False or there is no refiner. Compiled with ``compile=True``."""
        if self.channels_last:
            edge = edge.contiguous(memory_format=torch.channels_last)
            color = color.contiguous(memory_format=torch.channels_last)
        compiled = self._compiled_stages(edge, refine) if self.use_compile else None
        if compiled is None:
            return StagePipeline(self.generator, self.refiner).stages(edge, color, refine)
        try:
            if edge.is_cuda and self.resolved_compile_mode() in ("reduce-overhead", "max-autotune"):
                torch.compiler.cudagraph_mark_step_begin()  # a new inference step
                final, first = compiled(edge, color, refine)
                return final.clone(), first.clone()  # the next replay overwrites graph outputs
            return compiled(edge, color, refine)
        except compile_errors() as error:  # no C++ compiler, no Triton...: eager, said once
            self.use_compile = False
            warnings.warn(
                f"torch.compile failed, running eager: {one_line(error)[:300]}", stacklevel=2
            )
            return StagePipeline(self.generator, self.refiner).stages(edge, color, refine)

    def resolved_compile_mode(self) -> str | None:
        """The ``torch.compile`` mode for this model's device: ``compile_mode``, else
        :data:`AUTO_COMPILE_MODES` (None: the default mode)."""
        return self.compile_mode or AUTO_COMPILE_MODES.get(self.device.type)

    def _compiled_stages(self, edge: Tensor, refine: bool) -> Any:
        """The compiled :meth:`StagePipeline.stages`, made on the first call (and again when a
        stage or the device's mode changed), or None for an input shape past
        :data:`MAX_COMPILED_SHAPES`: run eager."""
        mode = self.resolved_compile_mode()
        made = self._compiled
        if (
            made is None
            or made[0] is not self.generator
            or made[1] is not self.refiner
            or made[2] != mode
        ):
            stages = StagePipeline(self.generator, self.refiner).stages
            function = torch.compile(
                stages,
                mode=mode,
                dynamic=False,  # a graph per shape: the fastest kernels, and CUDA graphs need it
                # guards on autocast or grad mode may add a graph to a shape: room for that,
                # counted for this Reconstructor alone
                recompile_limit=2 * MAX_COMPILED_SHAPES,
                isolate_recompiles=True,
            )
            self._compiled = made = (self.generator, self.refiner, mode, function)
            self.compiled_shapes, self._warned_shapes = [], False
        key = (tuple(edge.shape), bool(refine and self.refiner is not None))
        if key in self.compiled_shapes:
            return made[3]
        if len(self.compiled_shapes) < MAX_COMPILED_SHAPES:
            self.compiled_shapes.append(key)  # this call compiles
            return made[3]
        if not self._warned_shapes:
            self._warned_shapes = True
            warnings.warn(
                f"compiled for {MAX_COMPILED_SHAPES} input shapes already; {key[0]} and later "
                "new shapes run eager (resize or batch inputs to a few sizes to keep them "
                "compiled)",
                stacklevel=4,
            )
        return None

    def __getstate__(self) -> dict[str, Any]:
        # copies and pickles compile afresh: the compiled function holds these very modules
        return {**super().__getstate__(), "_compiled": None, "compiled_shapes": []}

    def reconstruct_tensors(
        self, edge: Tensor, color: Tensor, refine: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(final, first stage)`` (B, 3, H, W) float32 in [0, 1] from edge (B, 1, H, W) in
        {0, 1} and color (B, 3, H, W) in [0, 1] as they are (no conversion, no polarity): on this
        model's device, ``inference_mode``, autocast on CUDA."""
        check_same_size(edge, color)
        check_input_size(*edge.shape[-2:])
        device = self.device
        edge, color = edge.to(device), color.to(device)
        with torch.inference_mode():
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=autocast_dtype("cuda")):
                    final, first = self.stages_forward(edge, color, refine)
            else:
                final, first = self.stages_forward(edge, color, refine)
        if self.channels_last:  # outputs in the usual layout
            final, first = final.contiguous(), first.contiguous()
        return final.float().clamp(0, 1), first.float().clamp(0, 1)

    # ------------------------------------------------------------------------------ public API
    def reconstruct(
        self,
        edge: ImageInput,
        color: ImageInput,
        refine: bool = True,
        return_preliminary: bool = False,
        output_type: str = "pt",
        edge_polarity: str | None = None,
        edge_style: str = "canny",
    ) -> Any:
        """Reconstruct images from edges and color domains.

        Args:
            edge: (B, 1, H, W) in {0, 1}; or numpy arrays ((H, W), (H, W, C), (B, H, W, C), uint8
                or float in [0, 1]), PIL images, file paths, or a list of them. Grey values are
                binarized above 59/255 after the polarity is resolved.
            color: (B, 3, H, W) in [0, 1], or the same kinds of input as ``edge`` (RGB).
            refine: run the second stage when there is one.
            return_preliminary: also return the first stage's image.
            output_type: ``"pt"`` (tensor on this model's device), ``"np"`` ((B, H, W, 3) float32
                in [0, 1]) or ``"pil"`` (a list of PIL images).
            edge_polarity: ``auto`` (the majority value is the background),
                ``white-on-black`` (PI-REC's files) or ``black-on-white`` (line art); default
                ``self.edge_polarity``.
            edge_style: ``canny`` (edges as the model was trained on) or ``drawn`` (lines a
                person drew: strokes are thinned to 1 pixel first, see
                :func:`pirec_lightning.preprocess.drawn.prepare_edges`).

        Returns:
            The final images, or ``(final, first stage)`` with ``return_preliminary``.
        """
        edge_batch, color_batch = self.read_inputs(edge, color, edge_polarity)
        final, first = self.reconstruct_sized(edge_batch, color_batch, refine, edge_style)
        if return_preliminary:
            return to_output(final, output_type), to_output(first, output_type)
        return to_output(final, output_type)

    def read_inputs(
        self, edge: ImageInput, color: ImageInput, edge_polarity: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Edges (B, 1, H, W) in {0, 1} (polarity resolved, not thinned) and color domains
        (B, 3, H, W) in [0, 1] from what :meth:`reconstruct` takes, checked: same size, at least
        :data:`MIN_SIDE` (that error alone, before any warning about the edge map)."""
        edge_batch = to_edge_batch(edge, edge_polarity or self.edge_polarity, warn=False)
        color_batch = to_image_batch(color)
        check_same_size(edge_batch, color_batch)
        check_input_size(*edge_batch.shape[-2:])
        warn_unlikely_edges(edge_batch, edge_names(edge, edge_batch.shape[0]))
        return edge_batch, color_batch

    def prepare_inputs(
        self,
        edge: ImageInput,
        color: ImageInput,
        edge_polarity: str | None = None,
        edge_style: str = "canny",
    ) -> tuple[Tensor, Tensor]:
        """Exactly what the networks (and an exported graph: ``pirec export``) take for
        :meth:`reconstruct`'s inputs: edges (B, 1, h, w) float32 in {0, 1}, white lines on
        black (polarity resolved, ``drawn`` strokes thinned), and color domains (B, 3, h, w) in
        [0, 1], at (h, w) = :meth:`run_shape` of the inputs' size. Resize the graph's output
        back with :func:`resize_output` (docs/inference.md, "The ONNX input contract")."""
        edge_batch, color_batch = self.read_inputs(edge, color, edge_polarity)
        shape = self.run_shape(*edge_batch.shape[-2:])
        edge_batch, color_batch = resize_inputs(edge_batch, color_batch, shape)
        return prepare_edges(edge_batch, edge_style), color_batch

    def run_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) this model runs an input of ``height`` x ``width`` at
        (:func:`run_shape` with ``image_size`` and ``run_size``)."""
        return run_shape(height, width, self.image_size, self.run_size)

    def reconstruct_sized(
        self, edge: Tensor, color: Tensor, refine: bool = True, edge_style: str = "canny"
    ) -> tuple[Tensor, Tensor]:
        """:meth:`reconstruct_tensors` at :meth:`run_shape`: inputs (binary edges, before any
        thinning) resized to it (:func:`resize_inputs`), ``edge_style`` applied there, and the
        outputs resized back to the inputs' size (:func:`resize_output`)."""
        size = tuple(edge.shape[-2:])
        edge, color = resize_inputs(edge, color, self.run_shape(*size))
        final, first = self.reconstruct_tensors(prepare_edges(edge, edge_style), color, refine)
        return resize_output(final, size), resize_output(first, size)

    def read_photo(self, image: ImageInput) -> Tensor:
        """Photos (B, 3, H, W) in [0, 1]: a file is decoded reduced (JPEG draft, then a box
        reduction), its longer side at most :data:`MAX_PHOTO_SIDE`; other inputs as
        :func:`to_image_batch` reads them."""
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image, max_side=MAX_PHOTO_SIDE)
        return to_image_batch(image)

    def photo_inputs(
        self,
        image: ImageInput,
        sigma: float | None = None,
        median_kernel: int | None = None,
        k: int | None = None,
        second_median_kernel: int | None = None,
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Edge (B, 1, H, W) in {0, 1} and color domain (B, 3, H, W) in [0, 1] of photos, by the
        preprocessing engine. Unset values are the checkpoint's evaluation values scaled to
        min(H, W); set values are in pixels of these images. ``seed`` fixes K-means."""
        images = self.read_photo(image).to(self.device)
        generator = torch.Generator(device=images.device).manual_seed(seed)
        fixed = {
            "canny_sigma": sigma,
            "median_kernel": median_kernel,
            "k": k,
            "second_median_kernel": second_median_kernel,
        }
        with torch.inference_mode():
            made = self.preprocessor(
                images, "predict", ("edge", "color_domain"), generator=generator, params=fixed
            )
        return made["edge"], made["color_domain"]

    def from_photo(
        self,
        image: ImageInput,
        sigma: float | None = None,
        median_kernel: int | None = None,
        k: int | None = None,
        second_median_kernel: int | None = None,
        refine: bool = True,
        return_preliminary: bool = False,
        output_type: str = "pt",
        seed: int = 0,
    ) -> Any:
        """Reconstruct photos from their own edge and color domain (:meth:`photo_inputs`), as
        :meth:`reconstruct` does; ``image`` takes the same kinds of input as its ``color``.

        A photo file is read reduced, its longer side at most :data:`MAX_PHOTO_SIDE` (the
        output's size); with ``run_size="model"`` the photo is reduced further to the model's
        size (shorter side) before its edge and color domain are made, and the output is
        resized back."""
        photos = self.read_photo(image)
        size = tuple(photos.shape[-2:])
        check_input_size(*size)
        shape = self.run_shape(*size)
        if shape != size:
            photos = F.interpolate(photos, size=shape, mode="area").clamp(0, 1)
        edge, color = self.photo_inputs(photos, sigma, median_kernel, k, second_median_kernel, seed)
        final, first = self.reconstruct_tensors(edge, color, refine)
        final, first = resize_output(final, size), resize_output(first, size)
        if return_preliminary:
            return to_output(final, output_type), to_output(first, output_type)
        return to_output(final, output_type)

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        """``{"edge", "color_domain", ...}`` -> the batch with ``output`` and ``preliminary``
        (B, 3, H, W) in [0, 1] added, for ``trainer.predict``."""
        final, first = self.stages_forward(batch["edge"].float(), batch["color_domain"].float())
        final, first = final.float().clamp(0, 1), first.float().clamp(0, 1)
        if "size" in batch:  # inputs reduced to the model's size: outputs back to theirs
            size = tuple(int(v) for v in batch["size"][0])
            final, first = resize_output(final, size), resize_output(first, size)
        return {**batch, "output": final, "preliminary": first}


def is_safetensors(path: str | Path) -> bool:
    """Whether the local file ``path`` is named ``.safetensors`` or starts as one does (an
    8-byte little-endian header length, then a JSON object)."""
    local = Path(str(path)).expanduser()
    if local.suffix.lower() == ".safetensors":
        return True
    try:
        with open(local, "rb") as file:
            head = file.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 1e8


def read_safetensors_model(path: str | Path) -> dict[str, Any]:
    """A pirec-lightning model's ``.safetensors`` file as a checkpoint dict
    (:func:`~pirec_lightning.pretrained.read_pretrained`), its size checked first.

    Raises:
        CheckpointError: missing, damaged (shorter than its header says: truncated), or not a
            pirec-lightning model (one line naming the file and what to pass).
    """
    local = Path(str(path)).expanduser()
    if not local.is_file():
        what = "is a folder" if local.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {local} {what}; give a .ckpt or .safetensors file")
    size = local.stat().st_size
    damaged = (
        f"checkpoint {local} is damaged (a truncated or corrupt .safetensors file"
        "{detail}); copy it again, or for a bundled model pass --model NAME instead"
    )
    try:
        with open(local, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if size < 8 + length:
                raise CheckpointError(
                    damaged.format(detail=f": {size:,} bytes, its header alone says {8 + length:,}")
                )
            header = json.loads(file.read(length))
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (ValueError, KeyError, TypeError, IndexError):
        raise CheckpointError(damaged.format(detail=": its header cannot be read")) from None
    if size < 8 + length + end:
        raise CheckpointError(
            damaged.format(detail=f": {size:,} bytes of the {8 + length + end:,} its header lists")
        )
    return read_pretrained(path=local)


def check_writable(path: str | Path) -> None:
    """The folder the file ``path`` goes into can be written (or made): its nearest existing
    ancestor is a folder that takes a file (a probe, so read-only mounts are caught, and a
    read-only folder even for root, who passes every permission check).

    Raises:
        OutputError: one line naming the path and what is in the way.
    """
    path = Path(path).expanduser()
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"cannot write {path}: {existing} is a file, not a folder; choose another output path"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise OutputError(
            f"cannot write {path}: {existing} is not writable ({error.strerror or one_line(error)}); "
            "choose another output folder"
        ) from None


def check_outputs(
    outputs: Iterable[str | Path],
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    other_fix: str = "choose another output",
) -> list[Path]:
    """Check image outputs before any work; returns them as paths.

    Each must be an image file name (its extension names a format), never one of ``inputs``,
    not an existing file unless ``overwrite`` (``--overwrite``), in a folder that can be written.

    Raises:
        OutputError: one line naming the path and the fix.
    """
    paths = [Path(p).expanduser() for p in outputs]
    taken = {Path(p).expanduser().resolve() for p in inputs if p is not None}
    existing = []
    for path in paths:
        if path.is_dir() or path.suffix.lower() not in Image.registered_extensions():
            what = "is a folder" if path.is_dir() else "has no image extension"
            raise OutputError(
                f"output {path} {what}: the output needs an image file name (.png or .jpg), "
                f"e.g. {path / 'out.png' if path.is_dir() else path.with_suffix('.png')}"
            )
        if path.resolve() in taken:
            raise OutputError(
                f"output {path} is an input file; it is never written over: choose another "
                "output name or folder"
            )
        if path.exists():
            existing.append(path)
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputError(
            f"output {existing[0]}{more} exists; pass --overwrite to replace it, or {other_fix}"
        )
    for path in {p.parent: p for p in paths}.values():  # once per folder
        check_writable(path)
    return paths


#: zlib level of written PNGs: 1 encodes several times faster than Pillow's default 6, and the
#: files are about 10-30 % larger (docs/performance.md, "A folder on the CPU")
PNG_COMPRESS_LEVEL = 1


def save_images(images: Tensor, paths: list[str | Path]) -> None:
    """Write (B, 3, H, W) images in [0, 1] as 8-bit PNGs/JPEGs, one per path, each whole: into
    a temporary file in the same folder, renamed over ``path`` once complete (a reader, or a
    run interrupted midway, never sees half a file).

    Raises:
        OutputError: a path cannot be written (one line naming it).
    """
    array = np.round(images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255)
    for image, path in zip(array.astype(np.uint8), paths):
        path = Path(path)
        partial = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            format = Image.registered_extensions().get(path.suffix.lower())
            if format is None:
                raise ValueError(f"unknown file extension: {path.suffix!r}")
            handle, partial = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".part"
            )
            options = {"compress_level": PNG_COMPRESS_LEVEL} if format == "PNG" else {}
            with os.fdopen(handle, "wb") as file:
                Image.fromarray(image).save(file, format=format, **options)
            os.chmod(partial, 0o666 & ~_UMASK)
            os.replace(partial, path)
            partial = None
        except (OSError, ValueError) as error:  # ValueError: PIL's unknown file extension
            raise OutputError(f"cannot write {path}: {one_line(error)}") from None
        finally:
            if partial is not None:
                Path(partial).unlink(missing_ok=True)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: this process's umask, read once at import (reading it sets it): mkstemp makes files 0o600,
#: outputs get the usual mode
_UMASK = _read_umask()
