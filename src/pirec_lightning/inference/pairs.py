"""Folder mode of ``pirec reconstruct``: edge/color file pairs -> ``trainer.predict`` -> PNGs.

Pairs are found by the names PI-REC's examples use, in any subfolder: ``N_e.png`` + ``N_c.png``,
``N_edge.png`` + ``N_color.png`` and ``N_edge.png`` + ``N_cd.png``. Results are written as
``<output_dir>/<subfolder>/N_out.png`` (the release's own name for its outputs).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, Sampler

from pirec_lightning.data.folder import IMAGE_EXTENSIONS
from pirec_lightning.inference.inputs import to_edge_batch, to_image_batch
from pirec_lightning.inference.reconstructor import (
    check_input_size,
    check_outputs,
    resolve_device,
    save_images,
)
from pirec_lightning.models.precision import mixed_precision
from pirec_lightning.preprocess.drawn import prepare_edges

__all__ = ["PAIR_SUFFIXES", "Pair", "PairDataset", "find_pairs", "reconstruct_folder"]

#: (edge suffix, color suffix) of a pair's file stems
PAIR_SUFFIXES: tuple[tuple[str, str], ...] = (("_e", "_c"), ("_edge", "_color"), ("_edge", "_cd"))

Pair = tuple[str, Path, Path]  # (name relative to the folder, edge file, color file)


def find_pairs(root: str | Path) -> list[Pair]:
    """Edge/color pairs under ``root`` (recursive), sorted by name.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` is a file, or no pair was found (the message lists the naming
            schemes).
    """
    root = Path(root).expanduser()
    if root.is_file():
        raise ValueError(
            f"input folder {root} is a file, not a folder: give the folder of pairs (or one pair "
            "with --edge and --color)"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"input folder does not exist: {root}")
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    by_stem = {(p.parent, p.stem): p for p in files}
    pairs: dict[str, Pair] = {}
    for (folder, stem), path in sorted(by_stem.items()):
        for edge_suffix, color_suffix in PAIR_SUFFIXES:
            if not stem.endswith(edge_suffix):
                continue
            base = stem[: -len(edge_suffix)]
            color = by_stem.get((folder, base + color_suffix))
            if base and color is not None:
                name = (folder / base).relative_to(root).as_posix()
                pairs[name] = (name, path, color)
    if not pairs:
        schemes = ", ".join(f"N{e}.png + N{c}.png" for e, c in PAIR_SUFFIXES)
        raise ValueError(f"no edge/color pairs in {root} (looked for {schemes}, recursively)")
    return [pairs[name] for name in sorted(pairs)]


class PairDataset(Dataset):
    """Items ``{"edge": (1, H, W) in {0, 1}, "color_domain": (3, H, W) in [0, 1], "index": i}``,
    files read as :meth:`Reconstructor.reconstruct` reads them."""

    def __init__(
        self, pairs: Sequence[Pair], edge_polarity: str = "auto", edge_style: str = "canny"
    ) -> None:
        self.pairs = list(pairs)
        self.edge_polarity = edge_polarity
        self.edge_style = edge_style

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, edge_path, color_path = self.pairs[index]
        edge = prepare_edges(to_edge_batch(edge_path, self.edge_polarity), self.edge_style)[0]
        color = to_image_batch(color_path)[0]
        if edge.shape[-2:] != color.shape[-2:]:
            raise ValueError(
                f"{edge_path.name} is {tuple(edge.shape[-2:])} but {color_path.name} is "
                f"{tuple(color.shape[-2:])}: a pair must share its size"
            )
        check_input_size(*edge.shape[-2:], name=str(edge_path))
        return {"edge": edge, "color_domain": color, "index": index}


class SameSizeBatches(Sampler[list[int]]):
    """Batches of indices whose images share a size (read from the file headers only)."""

    def __init__(self, pairs: Sequence[Pair], batch_size: int) -> None:
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (_, edge, _) in enumerate(pairs):
            with Image.open(edge) as image:
                groups[image.size].append(i)
        self.batches = [
            group[start : start + batch_size]
            for group in groups.values()
            for start in range(0, len(group), batch_size)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class PairWriter(BasePredictionWriter):
    """Writes each predicted batch as ``N_out.png`` (and ``N_preliminary.png`` if asked)."""

    def __init__(self, pairs: Sequence[Pair], output_dir: Path, preliminary: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.pairs, self.output_dir, self.preliminary = list(pairs), output_dir, preliminary
        self.written: list[Path] = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        names = [self.pairs[int(i)][0] for i in prediction["index"]]
        paths = [self.output_dir / f"{name}_out.png" for name in names]
        save_images(prediction["output"], paths)
        self.written += paths
        if self.preliminary:
            save_images(
                prediction["preliminary"],
                [self.output_dir / f"{name}_preliminary.png" for name in names],
            )


def trainer_for(device: str | None, callbacks: list[pl.Callback]) -> pl.Trainer:
    """A predict-only Trainer on ``device`` (``cpu``, ``cuda``, ``cuda:N``; None: auto)."""
    kwargs: dict[str, Any] = {"accelerator": "auto", "devices": 1}
    if device is not None:
        parsed = resolve_device(device)
        kwargs["accelerator"] = "gpu" if parsed.type == "cuda" else parsed.type
        if parsed.type == "cuda" and parsed.index is not None:
            kwargs["devices"] = [parsed.index]
    if kwargs["accelerator"] in ("gpu", "auto") and torch.cuda.is_available():
        kwargs["precision"] = mixed_precision("cuda")
    return pl.Trainer(
        logger=False,
        callbacks=callbacks,
        enable_model_summary=False,
        enable_checkpointing=False,  # predicts only (and no checkpointing tip)
        **kwargs,
    )


def reconstruct_folder(
    reconstructor: pl.LightningModule,
    input_dir: str | Path,
    output_dir: str | Path,
    batch_size: int = 8,
    edge_polarity: str = "auto",
    device: str | None = None,
    preliminary: bool = False,
    num_workers: int = 0,
    edge_style: str = "canny",
    overwrite: bool = False,
) -> list[Path]:
    """Reconstruct every pair of ``input_dir`` into ``output_dir`` through ``trainer.predict``.

    Nothing is written unless every output can be: an input file is never written over, and an
    existing output only with ``overwrite`` (PI-REC's examples ship their own ``N_out.png``).

    Returns:
        The written ``N_out.png`` paths.

    Raises:
        ValueError: ``batch_size`` below 1, or no pairs in ``input_dir``.
        OutputError: an output is an input, exists (without ``overwrite``) or cannot be written.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size!r}")
    pairs = find_pairs(input_dir)
    output_dir = Path(output_dir).expanduser()
    names = [f"{name}_out.png" for name, _, _ in pairs]
    names += [f"{name}_preliminary.png" for name, _, _ in pairs] if preliminary else []
    inputs = [path for _, edge, color in pairs for path in (edge, color)]
    check_outputs([output_dir / name for name in names], inputs, overwrite)
    loader = DataLoader(
        PairDataset(pairs, edge_polarity, edge_style),
        batch_sampler=SameSizeBatches(pairs, batch_size),
        num_workers=num_workers,
    )
    writer = PairWriter(pairs, output_dir, preliminary)
    trainer = trainer_for(device, [writer])
    with warnings.catch_warnings():
        # SameSizeBatches returns every index; Lightning cannot see that in a custom sampler
        warnings.filterwarnings("ignore", "You are using a custom batch sampler")
        # raised inside Lightning itself, nothing a user can act on
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)")
        trainer.predict(reconstructor, dataloaders=loader, return_predictions=False)
    return writer.written
