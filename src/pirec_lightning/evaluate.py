"""How well a model reconstructs real images from their own edges and color domains.

For every image the edge and color domain are made with the model's evaluation settings (scaled
to the image), then three stages are compared with the image: the color domain itself (the
no-learning baseline), the first stage, and the refined output (two-stage models). PSNR and SSIM
always; LPIPS (AlexNet) and FID (Inception) from torchmetrics when their weights can be had from
an explicit path, ``$PIREC_WEIGHTS_DIR``, the torch hub cache or a download (not with
``PIREC_OFFLINE=1``); otherwise the report says, in one line each, how to enable them.

>>> report = evaluate(Reconstructor.from_checkpoint("last.ckpt"), image_source("test.npz", 64))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from pirec_lightning.inference import Reconstructor

__all__ = [
    "STAGES",
    "evaluate",
    "evaluation_grid",
    "image_source",
    "optional_metrics",
    "spread_indices",
]

#: compared stages, in report order
STAGES = ("color_domain", "first_stage", "refined")
#: edge maps evaluate() can use (see its docstring)
EDGES = ("canny", "drawn", "drawn-as-is")

ALEXNET = (
    "alexnet-owt-7be5be79.pth",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)
INCEPTION = (
    "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
)


# ---------------------------------------------------------------------------------- image sources
def image_source(path: str | Path, image_size: int) -> Dataset:
    """A folder of images (recursive) or an ``.npz`` of images, as ``(3, S, S)`` in [0, 1]."""
    from pirec_lightning.data.folder import FolderImageDataset
    from pirec_lightning.data.npz import NpzImageDataset

    path = Path(path).expanduser()
    if path.suffix.lower() == ".npz":
        return NpzImageDataset(path, image_size)
    return FolderImageDataset(path, image_size)


def checkpoint_test_split(
    data: Mapping[str, Any], overrides: Sequence[str] = ()
) -> tuple[Dataset, str]:
    """The test split of a checkpoint's saved data settings, changed by ``data.KEY=VALUE`` /
    ``data=emoji|folder`` overrides. Returns ``(dataset, description)``."""
    from omegaconf import OmegaConf

    from pirec_lightning.data.datamodule import PIRECDataModule

    settings = OmegaConf.create(dict(data))
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not (key == "data" or key.startswith("data.")):
            raise ValueError(
                f"unknown override {override!r}; use data.KEY=VALUE or data=emoji|folder"
            )
        if key == "data":
            if value not in ("emoji", "folder"):
                raise ValueError(f"data={value}: choose data=emoji or data=folder data.root=DIR")
            settings.root = None if value == "emoji" else settings.get("root")
            continue
        name = key.removeprefix("data.")
        if name.split(".")[0] not in settings:
            raise ValueError(f"unknown data setting {name!r}; known: {', '.join(settings)}")
        OmegaConf.update(settings, name, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
    kwargs = OmegaConf.to_container(settings, resolve=True)
    datamodule = PIRECDataModule(**{k: v for k, v in kwargs.items() if k != "outputs"})
    where = datamodule.root or "the embedded emoji"
    return datamodule.dataset("test"), f"test split of {where}"


# ------------------------------------------------------------------------------ optional metrics
@contextmanager
def _hub_dir_with(path: Path, filename: str):
    """torchvision/torch-fidelity look their weights up in the hub cache: show them ``path``."""
    hub = Path(torch.hub.get_dir())
    if path == hub / "checkpoints" / filename:
        yield
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "checkpoints").mkdir()
        (Path(folder) / "checkpoints" / filename).symlink_to(path.resolve())
        torch.hub.set_dir(folder)
        try:
            yield
        finally:
            torch.hub.set_dir(str(hub))


def _weights(
    explicit: str | Path | None, file: tuple[str, str], verify: bool
) -> tuple[Path | None, str]:
    from pirec_lightning.checkpoints import CheckpointError, load_weights_only
    from pirec_lightning.models.losses.weights import VGGWeightsUnavailable, resolve_vgg19_weights

    try:
        path = resolve_vgg19_weights(explicit, filename=file[0], url=file[1], verify=verify)
        # the libraries may unpickle it fully: only a file that is plain weights goes to them
        load_weights_only(path, "metric weights")
        return path, ""
    except VGGWeightsUnavailable:
        return None, "not found"
    except (FileNotFoundError, RuntimeError, CheckpointError) as error:
        return None, str(error)


def optional_metrics(
    lpips_weights: str | Path | None = None, fid_weights: str | Path | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``({"lpips": factory, "fid": factory}, {"lpips": why skipped, ...})``; a factory makes
    a fresh torchmetrics metric (one per stage)."""
    factories: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    path, reason = _weights(lpips_weights, ALEXNET, verify=True)
    if path is None:
        skipped["lpips"] = (
            f"LPIPS skipped: AlexNet weights {reason}; put {ALEXNET[0]} in $PIREC_WEIGHTS_DIR or "
            f"the torch hub cache, or pass --lpips-weights PATH ({ALEXNET[1]})"
        )
    else:

        def lpips(path: Path = path) -> Any:
            from torchmetrics.image import LearnedPerceptualImagePatchSimilarity

            with _hub_dir_with(path, ALEXNET[0]):
                return LearnedPerceptualImagePatchSimilarity("alex", normalize=True)

        factories["lpips"] = lpips
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        skipped["fid"] = "FID skipped: needs torch-fidelity: pip install 'pirec-lightning[metrics]'"
        return factories, skipped
    path, reason = _weights(fid_weights, INCEPTION, verify=False)
    if path is None:
        skipped["fid"] = (
            f"FID skipped: Inception weights {reason}; put {INCEPTION[0]} in $PIREC_WEIGHTS_DIR "
            f"or the torch hub cache, or pass --fid-weights PATH ({INCEPTION[1]})"
        )
    else:

        def fid(path: Path = path) -> Any:
            from torchmetrics.image.fid import FrechetInceptionDistance

            return FrechetInceptionDistance(
                normalize=True, feature_extractor_weights_path=str(path)
            )

        factories["fid"] = fid
    return factories, skipped


# ------------------------------------------------------------------------------------ evaluation
def _stage_metrics(factories: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    metrics = {
        "psnr": PeakSignalNoiseRatio(data_range=1.0),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
    }
    metrics |= {name: make() for name, make in factories.items()}
    return {name: metric.to(device) for name, metric in metrics.items()}


def evaluate(
    reconstructor: Reconstructor,
    images: Dataset,
    batch_size: int = 16,
    limit: int | None = None,
    seed: int = 0,
    lpips_weights: str | Path | None = None,
    fid_weights: str | Path | None = None,
    grid_images: int = 8,
    num_workers: int = 0,
    edges: str = "canny",
) -> tuple[dict[str, Any], Tensor]:
    """Evaluate ``reconstructor`` on ``images`` (a dataset of (3, S, S) in [0, 1]; ``limit``:
    that many images evenly spread over it, see :func:`spread_indices`).

    ``edges`` picks the edge maps: ``canny`` (the evaluation settings), ``drawn`` (a synthetic
    drawn-lines set, :func:`pirec_lightning.data.drawn_set.drawn_edges_for`, fed with
    ``edge_style="drawn"``: thinned to 1 pixel) or ``drawn-as-is`` (the same strokes, unthinned).

    Returns:
        ``(report, grid)``: the report dict (``images``, ``image_size``, ``stages`` ->
        ``{stage: {metric: value}}``, ``skipped`` metrics with the reason, ``settings``) and a
        (3, H', W') grid in [0, 1] of ``grid_images`` images spread over the set: edge | color domain |
        first stage | refined | ground truth.
    """
    if limit is not None:
        images = Subset(images, spread_indices(len(images), limit))
    if len(images) == 0:
        raise ValueError("no images to evaluate")
    if edges not in EDGES:
        raise ValueError(f"unknown edges {edges!r}; choose one of {', '.join(EDGES)}")
    device = reconstructor.device
    factories, skipped = optional_metrics(lpips_weights, fid_weights)
    stages = STAGES if reconstructor.stages == 2 else STAGES[:2]
    metrics = {stage: _stage_metrics(factories, device) for stage in stages}
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    columns: list[list[Tensor]] = []
    grid_rows = set(spread_indices(len(images), grid_images))  # a grid that samples the whole set
    for i, batch in enumerate(loader):
        batch = (batch["image"] if isinstance(batch, dict) else batch).to(device)
        edge, color = reconstructor.photo_inputs(batch, seed=seed + i)
        if edges != "canny":
            from pirec_lightning.data.drawn_set import drawn_edges_for

            edge = drawn_edges_for(batch, "drawn" if edges == "drawn" else "canny", seed=seed + i)
        final, first = reconstructor.reconstruct_tensors(edge, color)
        outputs = {"color_domain": color.float(), "first_stage": first, "refined": final}
        for stage in stages:
            for name, metric in metrics[stage].items():
                if name == "fid":
                    metric.update(batch, real=True)
                    metric.update(outputs[stage], real=False)
                else:
                    metric.update(outputs[stage], batch)
        rows = [j for j in range(len(batch)) if i * batch_size + j in grid_rows]
        if rows:
            shown = [edge.expand_as(batch), color, first] + ([final] if len(stages) == 3 else [])
            columns.append([t[rows].float().cpu() for t in [*shown, batch]])
    results = {
        stage: {name: _value(metric) for name, metric in stage_metrics.items()}
        for stage, stage_metrics in metrics.items()
    }
    first_item = images[0]
    size = (first_item["image"] if isinstance(first_item, dict) else first_item).shape[-1]
    report = {
        "images": len(images),
        "image_size": int(size),
        "stages": results,
        "skipped": skipped,
        "settings": {**_settings(reconstructor, size), "edges": edges},
    }
    return report, evaluation_grid(columns, grid_images)


def spread_indices(count: int, limit: int) -> list[int]:
    """``limit`` indices evenly spread over ``range(count)`` (all of them if ``limit >= count``):
    a subset that samples the whole set, not its first (often alike) items."""
    if limit >= count:
        return list(range(count))
    return [int(round(i * (count - 1) / max(limit - 1, 1))) for i in range(limit)]


def _value(metric: Any) -> float | None:
    try:
        value = float(metric.compute())
    except RuntimeError:  # e.g. FID on a single image
        return None
    return value if math.isfinite(value) else None


def _settings(reconstructor: Reconstructor, size: int) -> dict[str, Any]:
    from pirec_lightning.preprocess.confusion import evaluation_confusion

    values = evaluation_confusion(1, reconstructor.confusion, int(size))
    settings = {k: int(v[0]) for k, v in values.items() if k != "canny_sigma"}
    sigma = round(float(values["canny_sigma"][0]), 4)
    return {"canny_sigma": sigma, **settings, "stages": reconstructor.stages}


def evaluation_grid(columns: list[list[Tensor]], rows: int) -> Tensor:
    """Rows of edge | color domain | first stage | [refined] | ground truth, (3, H', W')."""
    from torchvision.utils import make_grid

    per_column = [torch.cat(parts)[:rows] for parts in zip(*columns)]
    tiles = torch.stack(per_column, 1).flatten(0, 1)
    return make_grid(tiles, nrow=len(per_column), padding=2, pad_value=1.0)


def write_report(report: dict[str, Any], grid: Tensor, output_dir: str | Path) -> tuple[Path, Path]:
    """``report.json`` and ``grid.png`` in ``output_dir``."""
    from torchvision.utils import save_image

    output_dir = Path(output_dir).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, grid_path = output_dir / "report.json", output_dir / "grid.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    save_image(grid, grid_path)
    return json_path, grid_path


def format_report(report: dict[str, Any]) -> str:
    """The report as a small table (markdown), one row per stage."""
    names = sorted({n for stage in report["stages"].values() for n in stage}, key=_metric_order)
    lines = ["| stage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for stage, values in report["stages"].items():
        cells = ["-" if values.get(n) is None else f"{values[n]:.4f}" for n in names]
        lines.append(f"| {stage.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _metric_order(name: str) -> int:
    order = ("psnr", "ssim", "lpips", "fid")
    return order.index(name) if name in order else len(order)
