"""How well a model reconstructs real images from their own edges and color domains.

For every image the edge and color domain are made with the model's evaluation settings (scaled
to the image), then three stages are compared with the image: the color domain itself (the
no-learning baseline), the first stage, and the refined output (two-stage models). PSNR and SSIM
always; LPIPS (AlexNet ``lpips`` and VGG16 ``lpips_vgg``) and DISTS (``dists``) from the backbones
``pirec weights fetch`` converts (:mod:`pirec_lightning.models.metrics`), and FID (Inception,
torch-fidelity) when its weights can be had; otherwise the report says, in one line each, how to
enable them.

>>> report = evaluate(Reconstructor.from_checkpoint("last.ckpt"), image_source("test.npz", 64))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from pirec_lightning.data.datamodule import PIRECDataModule
from pirec_lightning.data.drawn_set import drawn_edges_for
from pirec_lightning.data.folder import FolderImageDataset, find_images
from pirec_lightning.data.mix import item_groups
from pirec_lightning.data.npz import NpzImageDataset
from pirec_lightning.inference.reconstructor import Reconstructor
from pirec_lightning.models.metrics import OPTIONAL_METRICS, optional_metrics
from pirec_lightning.preprocess.confusion import evaluation_confusion

__all__ = [
    "STAGES",
    "evaluate",
    "evaluation_grid",
    "image_source",
    "spread_indices",
]

#: compared stages, in report order
STAGES = ("color_domain", "first_stage", "refined")
#: edge maps evaluate() can use (see its docstring)
EDGES = ("canny", "drawn", "drawn-as-is", "line_art")


# ---------------------------------------------------------------------------------- image sources
def image_source(path: str | Path, image_size: int) -> Dataset:
    """A folder of images (recursive) or an ``.npz`` of images, as ``(3, S, S)`` in [0, 1]."""

    path = Path(path).expanduser()
    if path.suffix.lower() == ".npz":
        return NpzImageDataset(path, image_size)
    return FolderImageDataset(path, image_size)


def checkpoint_test_split(
    data: Mapping[str, Any], overrides: Sequence[str] = ()
) -> tuple[Dataset, str]:
    """The test split of a checkpoint's saved data settings, changed by ``data.KEY=VALUE`` /
    ``data=emoji|folder|avatars|icons|mix`` overrides. Returns ``(dataset, description)``; the avatars'
    items carry their line art as a fourth channel.

    A folder the model was not trained on (``data.root=DIR`` other than the checkpoint's) is
    evaluated whole: none of it was seen in training, so there is no split to respect, unless
    ``data.split=...`` is given too.
    """
    settings = OmegaConf.create(dict(data))
    trained_on = settings.get("root")
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not (key == "data" or key.startswith("data.")):
            raise ValueError(
                f"unknown override {override!r}; use data.KEY=VALUE or "
                "data=emoji|folder|avatars|icons|mix"
            )
        if key == "data":
            if value not in ("emoji", "folder", "avatars", "icons", "mix"):
                raise ValueError(
                    f"data={value}: choose data=emoji, data=avatars, data=icons, data=mix or "
                    "data=folder data.root=DIR"
                )
            settings.root = None if value != "folder" else settings.get("root")
            # the drawn sources keep the checkpoint's settings of them, or the defaults
            for source, used in (
                ("avatars", ("avatars", "mix")),
                ("icons", ("icons", "mix")),
                ("mix", ("mix",)),
            ):
                settings[source] = (settings.get(source) or {}) if value in used else None
            continue
        name = key.removeprefix("data.")
        if name.split(".")[0] not in settings:
            raise ValueError(f"unknown data setting {name!r}; known: {', '.join(settings)}")
        OmegaConf.update(settings, name, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
    kwargs = OmegaConf.to_container(settings, resolve=True)
    root = kwargs.get("root")
    split_given = any(o.split("=", 1)[0] == "data.split" for o in overrides)
    if root is not None and root != trained_on and not split_given:
        folder = Path(str(root)).expanduser()
        if not folder.is_dir():
            raise ValueError(f"data.root folder does not exist: {root}; give a folder of images")
        images = FolderImageDataset(find_images(folder), int(kwargs["image_size"]))
        return images, f"all {len(images)} images of {folder} (not a training folder)"
    # decoded here, whatever cache the training run used (data.cache=device sends indices only)
    kwargs["cache"] = "none"
    datamodule = PIRECDataModule(**{k: v for k, v in kwargs.items() if k != "outputs"})
    return datamodule.dataset("test"), f"test split of {datamodule.source_name}"


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
    metrics: Sequence[str] = OPTIONAL_METRICS,
) -> tuple[dict[str, Any], Tensor]:
    """Evaluate ``reconstructor`` on ``images`` (a dataset of (3, S, S) in [0, 1]; ``limit``:
    that many images evenly spread over it, see :func:`spread_indices`).

    ``edges`` picks the edge maps: ``canny`` (the evaluation settings), ``drawn`` (a synthetic
    drawn-lines set, :func:`pirec_lightning.data.drawn_set.drawn_edges_for`, fed with
    ``edge_style="drawn"``: thinned to 1 pixel), ``drawn-as-is`` (the same strokes, unthinned)
    or ``line_art`` (the artists' own line art of ``data=avatars``, as drawn: only the items
    that have it are evaluated). Items of (4, S, S) carry their line art as a fourth channel
    (all -1 where there is none). ``metrics``: which of ``lpips``, ``lpips_vgg``, ``dists`` and
    ``fid`` to measure beside PSNR and SSIM where their weights are at hand (default: all).

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
    if edges == "line_art":
        images = with_line_art(images)
    device = reconstructor.device
    grouped = item_groups(images)  # avatars, icons, mix: also per style / set / source
    per_group: dict[str, dict[str, list[float]]] = {}
    factories, skipped = optional_metrics(lpips_weights, fid_weights, tuple(metrics))
    stages = STAGES if reconstructor.stages == 2 else STAGES[:2]
    metrics = {stage: _stage_metrics(factories, device) for stage in stages}
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    columns: list[list[Tensor]] = []
    grid_rows = set(spread_indices(len(images), grid_images))  # a grid that samples the whole set
    for i, batch in enumerate(loader):
        batch = (batch["image"] if isinstance(batch, dict) else batch).to(device)
        line_art = batch[:, 3:] if batch.shape[1] == 4 else None
        batch = batch[:, :3]
        edge, color = reconstructor.photo_inputs(batch, seed=seed + i)
        if edges == "line_art":
            edge = (line_art > 0.5).to(edge.dtype)
        elif edges != "canny":
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
        if grouped is not None:
            start = i * batch_size
            _add_to_groups(per_group, grouped[0][start : start + len(batch)], outputs, batch)
        rows = [j for j in range(len(batch)) if i * batch_size + j in grid_rows]
        if rows:
            shown = [edge.expand_as(batch), color, first] + ([final] if len(stages) == 3 else [])
            columns.append([t[rows].float().cpu() for t in [*shown, batch]])
    labels = ["edge", "color domain", "first stage"]
    labels += ["refined"] if len(stages) == 3 else []
    labels += ["ground truth"]
    results = {
        stage: {name: _value(metric) for name, metric in stage_metrics.items()}
        for stage, stage_metrics in metrics.items()
    }
    first_item = images[0]
    size = (first_item["image"] if isinstance(first_item, dict) else first_item).shape[-1]
    if edges == "line_art":
        skipped["line_art"] = "line_art: only the items with line art were evaluated"
    report = {
        "images": len(images),
        "image_size": int(size),
        "stages": results,
        "skipped": skipped,
        "settings": {**_settings(reconstructor, size), "edges": edges},
        "grid_columns": labels,
    }
    if grouped is not None:
        report["groups"] = _group_report(per_group, grouped[1], stages)
    return report, evaluation_grid(columns, grid_images, labels)


def _add_to_groups(
    per_group: dict[str, dict[str, list[float]]],
    groups: Sequence[str],
    outputs: Mapping[str, Tensor],
    batch: Tensor,
) -> None:
    """Per image: squared-error sums and SSIM of each stage, under its group and its source."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    for stage, output in outputs.items():
        output = output.float().clamp(0, 1)
        errors = (output - batch.float()).pow(2).flatten(1).sum(1).tolist()
        scores = ssim(output, batch.float(), data_range=1.0, reduction="none").tolist()
        for group, error, score in zip(groups, errors, scores):
            for name in _group_names(group):
                entry = per_group.setdefault(name, {})
                entry.setdefault(f"{stage}/se", []).append(error)
                entry.setdefault(f"{stage}/ssim", []).append(score)
    for group in groups:
        for name in _group_names(group):
            per_group[name].setdefault("values", []).append(float(batch[0].numel()))


def _group_names(group: str) -> tuple[str, ...]:
    """A group and, for ``<source>/<set>``, its source's ``<source> (all)`` row."""
    return (group, f"{group.split('/')[0]} (all)") if "/" in group else (group,)


def _group_report(
    per_group: Mapping[str, Mapping[str, list[float]]], heldout: set[str], stages: Sequence[str]
) -> dict[str, Any]:
    """``{group: {images, heldout, stages: {stage: {psnr, ssim}}}}``: PSNR over the group's
    pixels (as the whole set's, from the summed squared error), SSIM averaged over its images;
    ``<source> (all)`` rows sum a source's groups."""
    report = {}
    for name in sorted(per_group):
        entry = per_group[name]
        values = sum(entry["values"])
        results = {}
        for stage in stages:
            mse = sum(entry[f"{stage}/se"]) / values
            psnr = 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf
            results[stage] = {"psnr": psnr, "ssim": float(np.mean(entry[f"{stage}/ssim"]))}
        report[name] = {
            "images": len(entry["values"]),
            "heldout": name in heldout,
            "stages": results,
        }
    return report


def with_line_art(images: Dataset) -> Dataset:
    """The items of ``images`` that carry line art (a fourth channel that is not all -1).

    Raises:
        ValueError: no item has line art (the set is not ``data=avatars``' line-art styles).
    """
    keep = []
    for index in range(len(images)):
        item = images[index]
        item = item["image"] if isinstance(item, dict) else item
        if item.shape[0] == 4 and float(item[3].max()) >= 0:
            keep.append(index)
    if not keep:
        raise ValueError(
            "edges=line_art needs images with the artists' line art: evaluate a data=avatars "
            "model's test split (or pass data=avatars)"
        )
    return Subset(images, keep)


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

    values = evaluation_confusion(1, reconstructor.confusion, int(size))
    settings = {k: int(v[0]) for k, v in values.items() if k != "canny_sigma"}
    sigma = round(float(values["canny_sigma"][0]), 4)
    return {"canny_sigma": sigma, **settings, "stages": reconstructor.stages}


#: shorter column names, for tiles too narrow for the full ones
SHORT_LABELS = {"color domain": "color", "first stage": "first", "ground truth": "truth"}


def evaluation_grid(
    columns: list[list[Tensor]], rows: int, labels: Sequence[str] | None = None
) -> Tensor:
    """Rows of edge | color domain | first stage | [refined] | ground truth, (3, H', W'), under
    a header row naming each column (``labels``, one per column; None: no header)."""
    from torchvision.utils import make_grid

    per_column = [torch.cat(parts)[:rows] for parts in zip(*columns)]
    tiles = torch.stack(per_column, 1).flatten(0, 1)
    grid = make_grid(tiles, nrow=len(per_column), padding=2, pad_value=1.0)
    if labels is None:
        return grid
    if len(labels) != len(per_column):
        raise ValueError(f"{len(labels)} labels for {len(per_column)} grid columns")
    return torch.cat([grid_header(labels, tiles.shape[-1], grid.shape[-1]), grid], dim=1)


def grid_header(labels: Sequence[str], tile: int, width: int, padding: int = 2) -> Tensor:
    """A white (3, h, width) strip with ``labels`` in black, each centred over its column of
    ``tile`` px (as :func:`torchvision.utils.make_grid` lays them out with ``padding``); the
    font shrinks to fit a narrow tile, down to 7 px, then the short names are used."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(7, min(14, tile // 6))
    fonts = [ImageFont.load_default(size=s) for s in range(size, 6, -1)]

    def fitting(text: str):
        for font in fonts:
            if font.getlength(text) <= tile:
                return text, font
        short = SHORT_LABELS.get(text, text)
        return short, next((f for f in fonts if f.getlength(short) <= tile), fonts[-1])

    height = size + 6
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    for i, label in enumerate(labels):
        text, font = fitting(label)
        centre = padding + i * (tile + padding) + tile / 2
        draw.text((centre, height / 2), text, fill="black", font=font, anchor="mm")
    array = torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1)
    return array.float() / 255


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
    groups = report.get("groups")
    if groups:  # per source, per style / set; held-out ones never trained on
        stages = list(report["stages"])
        lines += ["", "| group | images | " + " | ".join(f"{s} PSNR / SSIM" for s in stages) + " |"]
        lines.append("|---" * (len(stages) + 2) + "|")
        for name, entry in groups.items():
            cells = [f"{v['psnr']:.2f} / {v['ssim']:.3f}" for v in entry["stages"].values()]
            label = name + (" (held out)" if entry["heldout"] else "")
            lines.append(f"| {label} | {entry['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _metric_order(name: str) -> int:
    order = ("psnr", "ssim", "lpips", "lpips_vgg", "dists", "fid")
    return order.index(name) if name in order else len(order)
