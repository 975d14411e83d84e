"""Export the reconstruction pipeline (edge, color) -> image to TorchScript or ONNX.

The exported graph is :class:`~pirec_lightning.inference.StagePipeline`: both stages, padding
to a multiple of 4 and cropping back, with dynamic batch, height and width. Inputs: ``edge``
(B, 1, H, W) float32 in {0, 1} and ``color`` (B, 3, H, W) float32 in [0, 1]; output ``image``
(B, 3, H, W) in [0, 1]. Reading files, polarity and photo preprocessing stay in Python.

>>> export(Reconstructor.from_checkpoint("last.ckpt"), "onnx", "pirec.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pirec_lightning.errors import OutputError, one_line
from pirec_lightning.inference.reconstructor import Reconstructor, StagePipeline, check_writable

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "PARITY_TOLERANCE",
    "check_extension",
    "export",
    "max_difference",
    "run_exported",
]

FORMATS = ("torchscript", "onnx")
#: the file extensions of each format (the first is the one suggested)
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".pth", ".ts", ".torchscript"),
}
#: the exported model's output must equal eager within this (max absolute difference)
PARITY_TOLERANCE = 1e-4
_AXES = {0: "batch", 2: "height", 3: "width"}


def _example(batch: int = 2, height: int = 36, width: int = 44) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    edge = (torch.rand(batch, 1, height, width, generator=generator) > 0.85).float()
    return edge, torch.rand(batch, 3, height, width, generator=generator)


def _export_onnx(pipeline: StagePipeline, path: Path, opset: int) -> None:
    kwargs = {
        "input_names": ["edge", "color"],
        "output_names": ["image"],
        "opset_version": opset,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter chatter on every layer
        try:
            # the TorchScript-based exporter: seconds where the dynamo one takes a minute
            axes = {"edge": _AXES, "color": _AXES, "image": _AXES}
            torch.onnx.export(pipeline, _example(), path, dynamic_axes=axes, dynamo=False, **kwargs)
        except (TypeError, RuntimeError, NotImplementedError):
            dims = {i: torch.export.Dim(name, min=1) for i, name in _AXES.items()}
            torch.onnx.export(
                pipeline, _example(), path, dynamic_shapes=[dims, dims], dynamo=True, **kwargs
            )


def export(
    reconstructor: Reconstructor,
    format: str,
    path: str | Path,
    refine: bool = True,
    opset: int = 17,
) -> float:
    """Write the pipeline of ``reconstructor`` (first stage only with ``refine=False``) and check
    it against eager on an odd-sized batch.

    Returns:
        The max absolute difference exported vs eager on that batch.

    Raises:
        ValueError: unknown ``format``, or the difference exceeds :data:`PARITY_TOLERANCE`.
        OutputError: ``path`` cannot be written (a read-only folder, a file in the way).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose {' or '.join(FORMATS)}")
    path = Path(path).expanduser()
    check_extension(path, format)
    check_writable(path)  # before the minutes an export can take
    pipeline = StagePipeline(reconstructor.generator, reconstructor.refiner if refine else None)
    pipeline = pipeline.to("cpu").eval()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if format == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # jit.script's deprecation notice
                torch.jit.script(pipeline).save(str(path))
        else:
            _export_onnx(pipeline, path, opset)
    except OSError as error:  # the disk filled up, the folder went read-only meanwhile
        raise OutputError(f"cannot write {path}: {one_line(error)}") from None
    difference = max_difference(pipeline, path, format)
    reconstructor.to(reconstructor.device)  # the pipeline shares its modules: move them back
    if difference > PARITY_TOLERANCE:
        raise ValueError(
            f"exported {format} differs from eager by {difference:.2e} > {PARITY_TOLERANCE:g}"
        )
    return difference


def check_extension(path: str | Path, format: str) -> None:
    """The file name must say its format (``.onnx`` for ONNX; ``.pt``, ``.pth``, ``.ts`` or
    ``.torchscript`` for TorchScript): a file is refused rather than renamed, so the name a user
    typed is the name written.

    Raises:
        ValueError: one line with the name to use and the format that fits the name given.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in EXTENSIONS[format]:
        return
    fits = next((f for f, names in EXTENSIONS.items() if suffix in names), None)
    other = f", or --format {fits} for a {suffix} file" if fits else ""
    label = "an ONNX" if format == "onnx" else "a TorchScript"
    raise ValueError(
        f"-o {path}: {label} file is named {' or '.join(EXTENSIONS[format])}; use -o "
        f"{path.with_suffix(EXTENSIONS[format][0])}{other}"
    )


def run_exported(path: str | Path, format: str, edge: Tensor, color: Tensor) -> Tensor:
    """Run an exported file on CPU: (B, 1, H, W), (B, 3, H, W) -> (B, 3, H, W)."""
    if format == "torchscript":
        with torch.inference_mode():
            return torch.jit.load(str(path), map_location="cpu")(edge, color)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"edge": edge.numpy().astype(np.float32), "color": color.numpy().astype(np.float32)}
    return torch.from_numpy(session.run(None, feed)[0])


def max_difference(pipeline: StagePipeline, path: Path, format: str) -> float:
    """Max |exported - eager| over two batches of other sizes than the export's example."""
    worst = 0.0
    for shape in ((3, 37, 50), (1, 64, 40)):
        edge, color = _example(*shape)
        with torch.inference_mode():
            eager = pipeline(edge, color)
        exported = run_exported(path, format, edge, color)
        if exported.shape != eager.shape:
            raise ValueError(f"exported {format} gave {tuple(exported.shape)} for {shape}")
        worst = max(worst, float((exported - eager).abs().max()))
    return worst
