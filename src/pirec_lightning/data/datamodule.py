"""The LightningDataModule: decoded images in, PI-REC training inputs out, made on the batch's device.

The datasets only decode and resize on the CPU. Everything random (edges at a drawn Canny sigma,
edge dropout, brush-stroke masks, the color domain under hyperparameter confusion) happens in
:meth:`PIRECDataModule.on_after_batch_transfer`, on whatever device the batch was moved to, through
one :class:`~pirec_lightning.preprocess.confusion.Preprocessor` (the single seam where the
preprocessing engine plugs in).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler

from pirec_lightning.data.augment import build_augmentation
from pirec_lightning.data.avatars import AvatarDataset
from pirec_lightning.data.cache import (
    CachedImages,
    DeviceImages,
    check_cache_mode,
    decode_all,
)
from pirec_lightning.data.emoji import emoji_files, emoji_sources
from pirec_lightning.data.folder import FolderImageDataset, SharedCounter, find_images
from pirec_lightning.data.icons import IconDataset
from pirec_lightning.data.mix import MixDataset
from pirec_lightning.data.npz import NpzImageDataset
from pirec_lightning.data.placement import (
    AheadLoader,
    InputMaker,
    WorkerInputs,
    check_placement,
    close_loaders,
    evaluation_seed,
    is_made,
)
from pirec_lightning.data.ranks import all_gather_object
from pirec_lightning.data.scan import ScanReport, scan_images, usable_images
from pirec_lightning.data.settings import check_extra_val
from pirec_lightning.data.split import SPLITS, emoji_group_key, split_files
from pirec_lightning.data.summary import check_splits, log_data_summary, report_late_failures
from pirec_lightning.images import DEFAULT_MAX_PIXELS
from pirec_lightning.preprocess.confusion import Preprocessor

STAGES = ("fit", "validate", "test", "predict")
#: the split each stage reads (data.cache=device gathers from it)
STAGE_SPLITS = {"fit": "train", "validate": "val", "test": "test", "predict": "test"}


class IndexedDataset(Dataset):
    """Wraps an image dataset so each item is ``{"image": (3, S, S) in [0, 1], "index": int}``.

    The index seeds the evaluation-time randomness (masks), so validation inputs are the same
    every epoch and on every machine.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.dataset[index]  # None with data.cache=device: gathered on the device
        return {"index": index} if image is None else {"image": image, "index": index}


class _Pictures(Dataset):
    """The pictures of a packed dataset (its first three channels)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index][:3]


class PIRECDataModule(pl.LightningDataModule):
    """Images from a folder (or the embedded emoji) turned into PI-REC inputs on the device.

    Args:
        root: folder of images, searched recursively; ``None`` uses the embedded Twemoji set.
        image_size: side of the square training images, divisible by 4.
        batch_size: images per batch (per device).
        num_workers: DataLoader worker processes for decoding.
        split: train/val/test fractions of the deterministic split.
        split_seed: seed of that split.
        limit: keep at most this many training images (``None``: all).
        pin_memory: pin host memory for faster host-to-GPU copies; ``None``: when the
            trainer runs on CUDA.
        cache: ``none`` (decode every batch), ``ram`` (decode each split once into host
            memory) or ``device`` (and keep it on the batch's device); see
            :mod:`pirec_lightning.data.cache`. All give the same batches.
        augment: Kornia augmentations applied in training only, before the inputs are made
            (see :func:`pirec_lightning.data.augment.build_augmentation`); ``None``: none.
        preprocess_backend: ``engine`` (this package's batched ops) or ``kornia``
            (``kornia.filters.canny``, ``median_blur`` and ``kornia.contrib.KMeans``).
        confusion: ``{"enabled": bool, "seed": int, **ConfusionConfig fields}``.
        outputs: the inputs to make (subset of ``edge``, ``mask``, ``color_domain``); ``None``
            asks the attached LightningModule (its ``required_inputs``), else makes all three.
        extra_val: named extra validation sets, validated after the main one (see
            :mod:`pirec_lightning.data.settings`).
        max_pixels: images with more pixels are skipped before decoding (``None``: no limit).
        preprocess_on: where the inputs are made: ``device`` (in series with the step), ``ahead``
            (the next batch's, on a side stream, during the step) or ``workers`` (on the CPU in
            the DataLoader's workers); see :mod:`pirec_lightning.data.placement`.
        avatars: ``data=avatars``: the DiceBear avatars instead of images from a folder,
            ``{count, styles, heldout_styles, cache_dir}`` (see :mod:`pirec_lightning.data.avatars`);
            each picture comes with its line art as a fourth channel, which the preprocessing
            uses as the edge map for a fraction ``confusion.line_art`` of the training items.
        icons: ``data=icons``: the Iconify sets, ``{sets, heldout_sets, cache_dir, tarballs}``
            (see :mod:`pirec_lightning.data.icons`), with line art as for the avatars.
        mix: ``data=mix``: ``{weights: {avatars, icons, emoji}}``, the three sources as one
            dataset (see :mod:`pirec_lightning.data.mix`), the avatars and icons configured by
            ``avatars`` and ``icons``; the training draws follow the weights.

    A batch after transfer is a dict with ``image`` (B, 3, H, W) in [0, 1], ``index`` (B,), and
    the requested ``edge`` (B, 1, H, W) in {0, 1}, ``mask`` (B, 1, H, W) in {0, 1} (1 = hole) and
    ``color_domain`` (B, 3, H, W) in [0, 1].
    """

    def __init__(
        self,
        root: str | Path | None = None,
        image_size: int = 64,
        batch_size: int = 16,
        num_workers: int = 2,
        split: Sequence[float] = (0.9, 0.05, 0.05),
        split_seed: int = 0,
        limit: int | None = None,
        pin_memory: bool | None = False,
        confusion: dict[str, Any] | None = None,
        outputs: Sequence[str] | None = None,
        cache: str = "none",
        augment: dict[str, Any] | None = None,
        preprocess_backend: str = "engine",
        extra_val: dict[str, Any] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        avatars: dict[str, Any] | None = None,
        preprocess_on: str = "device",
        icons: dict[str, Any] | None = None,
        mix: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(root).expanduser() if root is not None else None
        self.avatars = dict(avatars) if avatars is not None else None
        self.icons = dict(icons) if icons is not None else None
        self.mix = dict(mix) if mix is not None else None
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.outputs = tuple(outputs) if outputs is not None else None
        confusion = dict(confusion or {})
        enabled = bool(confusion.pop("enabled", True))
        seed = int(confusion.pop("seed", 0) or 0)
        self.seed = seed
        self.preprocessor = Preprocessor(
            image_size=self.image_size,
            confusion=confusion or None,
            enabled=enabled,
            seed=seed,
            backend=preprocess_backend,
        )
        self.extra_val = check_extra_val(extra_val)
        self.cache = check_cache_mode(cache)
        self.preprocess_on = check_placement(preprocess_on, self.cache)
        self.augmentation = build_augmentation(augment)
        self.maker = InputMaker(self.preprocessor, self.augmentation)
        self._cached: dict[str, DeviceImages] = {}
        self._files: dict[str, list[Path]] | None = None
        self._drawn: dict[tuple[str, int], Dataset] = {}
        self.summary: dict[str, int] = {}
        self._summary_logged = False
        self.decode_failures = SharedCounter()  # files that go bad after the scan, all workers
        self._train_generators: dict[torch.device, torch.Generator] = {}
        # generator states from a checkpoint, applied when each device's generator is made
        self._pending_states: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------------------- data sets
    def files(self) -> dict[str, list[Path]]:
        """The deterministic ``train``/``val``/``test`` file lists (computed once)."""
        if self._files is None:
            if self.drawn:  # (style, seed), (set, icon), (source, group, i) stand in for files
                pairs = {split: self.drawn_dataset(split).items for split in SPLITS}
                files = {
                    split: [Path(*(str(k) for k in key)) for key in pairs[split]]
                    for split in SPLITS
                }
                everything = [f for split in SPLITS for f in files[split]]
                report = ScanReport(Path(self.source_name), usable=everything, small=0)
            elif self.root is None:
                emoji = emoji_files()  # 72 px PNGs; above 72 px rendered from SVG, not upscaled
                report = ScanReport(Path("the embedded emoji"), usable=emoji, small=0)
                files = split_files(
                    report.usable, self.hparams.split, self.hparams.split_seed, emoji_group_key
                )
            else:
                report = scan_images(self.root, self.hparams.max_pixels, self.image_size)
                files = split_files(
                    usable_images(report), self.hparams.split, self.hparams.split_seed
                )
            if self.hparams.limit is not None:
                files["train"] = files["train"][: int(self.hparams.limit)]
            where = self.source_name
            self.summary = check_splits(files, where, report, self.hparams.split)
            self._files = files
        return self._files

    @property
    def drawn(self) -> bool:
        """Whether the data are SVG drawings rendered here (avatars, icons, the mix)."""
        return self.mix is not None or self.icons is not None or self.avatars is not None

    @property
    def source_name(self) -> str:
        """Where the images come from, for messages and logs."""
        if self.mix is not None:
            return "the mix (avatars, icons, emoji)"
        if self.icons is not None:
            return "the Iconify sets"
        if self.avatars is not None:
            return "the DiceBear avatars"
        return str(self.root or "the embedded emoji")

    def drawn_dataset(self, split: str, image_size: int | None = None) -> Dataset:
        """Split ``split`` of ``data=mix``, ``data=icons`` or ``data=avatars``, packed."""
        size = image_size or self.image_size
        if (split, size) not in self._drawn:  # the sets are read once
            self._drawn[(split, size)] = self._make_drawn(split, size)
        return self._drawn[(split, size)]

    def _make_drawn(self, split: str, size: int) -> Dataset:
        fractions, seed = self.hparams.split, self.hparams.split_seed
        if self.mix is not None:
            return MixDataset(
                split, size, self.mix.get("weights"), self.avatars, self.icons, fractions, seed
            )
        if self.icons is not None:
            spec = self.icons
            return IconDataset(
                split,
                size,
                sets=spec.get("sets"),
                heldout_sets=spec.get("heldout_sets") or (),
                fractions=fractions,
                split_seed=seed,
                cache_dir=spec.get("cache_dir"),
                tarballs=spec.get("tarballs"),
                packed=True,
            )
        return self.avatar_dataset(split, size)

    def groups(self, split: str) -> list[str]:
        """Where each item of ``split`` comes from (``avatars/<style>``, ``icons/<set>``,
        ``emoji``; the file's folder for a folder of images), in loader order."""
        files = self.files()[split]
        if not self.drawn:
            return [f.parent.name or "images" for f in files]
        if self.mix is not None:
            return [
                f"{f.parts[0]}/{f.parts[1]}" if f.parts[0] != "emoji" else "emoji" for f in files
            ]
        return [f"{'icons' if self.icons is not None else 'avatars'}/{f.parts[0]}" for f in files]

    def heldout_groups(self) -> set[str]:
        """The groups (as :meth:`groups` names them) never in training: held-out sets."""
        train = set(self.groups("train"))
        return {g for split in ("val", "test") for g in self.groups(split)} - train

    def avatar_dataset(self, split: str, image_size: int | None = None, packed: bool = True):
        """Split ``split`` of ``data=avatars`` (see :class:`~.avatars.AvatarDataset`)."""
        spec = self.avatars or {}
        return AvatarDataset(
            split,
            image_size or self.image_size,
            count=spec.get("count", 20_000),
            styles=spec.get("styles"),
            heldout_styles=spec.get("heldout_styles") or (),
            fractions=self.hparams.split,
            split_seed=self.hparams.split_seed,
            cache_dir=spec.get("cache_dir"),
            packed=packed,
        )

    def dataset(self, split: str) -> IndexedDataset:
        files = self.files()[split]
        if self.drawn:
            images: Dataset = Subset(self.drawn_dataset(split), range(len(files)))
            return self._indexed(split, images)
        if self.root is None:  # the embedded emoji: above 72 px rendered from their SVGs
            files = emoji_sources(files, self.image_size)
        images = FolderImageDataset(
            files, self.image_size, self.hparams.max_pixels, self.decode_failures
        )
        return self._indexed(split, images)

    def _indexed(self, split: str, images: Dataset) -> IndexedDataset:
        """``images`` as :class:`IndexedDataset`, through the configured cache."""
        if self.cache == "none":
            return IndexedDataset(images)
        if split not in self._cached:
            self._cached[split] = DeviceImages(decode_all(images, self.num_workers))
        cached = self._cached[split].images
        return IndexedDataset(CachedImages(cached, indices_only=self.cache == "device"))

    def setup(self, stage: str | None = None) -> None:
        self.files()
        if not self._summary_logged:  # once per run, however many stages set up
            log_data_summary(self.trainer, self.summary, self.source_name)
            self._summary_logged = True

    def teardown(self, stage: str | None = None) -> None:
        self.close_ahead()
        report_late_failures(self.trainer, self.decode_failures.value)

    def close_ahead(self) -> None:
        """Stop the threads making inputs ahead (``data.preprocess_on=ahead``): the phases call
        it at the end of training, before Lightning shuts the DataLoader's workers down; the
        teardown and an error call it too. No thread outlives the run, nor forks with it."""
        close_loaders(self)

    def on_exception(self, exception: BaseException) -> None:
        self.close_ahead()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        stage = "fit" if shuffle else {"val": "validate"}.get(split, "test")
        placement = self.preprocess_on
        # decoded data needs no workers (slicing a cached tensor is faster than IPC), unless the
        # workers make the inputs
        workers = self.num_workers if self.cache == "none" or placement == "workers" else 0
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        pin = self.hparams.pin_memory
        if pin is None:
            pin = device is not None and device.type == "cuda"
        options: dict[str, Any] = dict(
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=bool(pin) and self.cache != "device",
            drop_last=shuffle,
            persistent_workers=workers > 0,
        )
        if shuffle and self.mix is not None:  # each source's share of the draws: its weight
            dataset = self.drawn_dataset(split)
            assert isinstance(dataset, MixDataset)
            generator = torch.Generator().manual_seed(self.seed)
            count = len(self.files()[split])
            weights = dataset.sample_weights(count)
            options["sampler"] = WeightedRandomSampler(weights, count, generator=generator)
            options["shuffle"] = False
        if placement == "workers":
            rank = self.trainer.global_rank if self.trainer is not None else 0
            step = self.trainer.global_step if self.trainer is not None else 0
            # apart from the evaluation seeds (seed + 7919 * (index + 1))
            train_seed = self.seed + 2**40 + 1_000_003 * rank + 104_729 * step
            outputs = self.required_outputs()
            collate = WorkerInputs(self.maker, stage, outputs, self.seed, train_seed)
            return DataLoader(self.dataset(split), collate_fn=collate, **options)
        if placement == "ahead" and stage == "fit":
            device = device or torch.device("cpu")
            if device.type == "mps":  # MPS ops from two threads are not safe
                warnings.warn("data.preprocess_on=ahead runs as device on MPS", stacklevel=2)
                return DataLoader(self.dataset(split), **options)
            prepare = functools.partial(self.make_inputs, stage=stage)
            return AheadLoader(
                self.dataset(split), prepare=prepare, device=device, owner=self, **options
            )
        return DataLoader(self.dataset(split), **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    @property
    def extra_val_names(self) -> tuple[str, ...]:
        """Names of the extra validation sets, in dataloader order after the main one."""
        return tuple(self.extra_val)

    def extra_val_dataset(self, name: str) -> IndexedDataset:
        """The extra validation set ``name`` (``data.extra_val``)."""
        spec = self.extra_val[name]
        size, root, limit = spec["image_size"] or self.image_size, spec["root"], spec["limit"]
        if root is not None and Path(str(root)).suffix.lower() == ".npz":
            images = NpzImageDataset(root, size)
            return IndexedDataset(Subset(images, range(min(limit or len(images), len(images)))))
        if root is None and self.drawn:  # pictures only: validated with Canny
            images = _Pictures(self.drawn_dataset("val", size))
            return IndexedDataset(Subset(images, range(min(limit or len(images), len(images)))))
        files = self.files()["val"] if root is None else find_images(Path(str(root)).expanduser())
        return IndexedDataset(FolderImageDataset(files[:limit], size, self.hparams.max_pixels))

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        main = self._loader("val", shuffle=False)
        if not self.extra_val:
            return main
        extra = [
            DataLoader(
                self.extra_val_dataset(name),
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                pin_memory=bool(self.hparams.pin_memory),
                persistent_workers=self.num_workers > 0,
            )
            for name in self.extra_val
        ]
        return [main, *extra]

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----------------------------------------------------------------------- on-device inputs
    def current_stage(self) -> str:
        """``fit`` while training; ``validate`` during the sanity check and validation; else the
        trainer's stage. Without a trainer: ``fit``."""
        trainer = self.trainer
        if trainer is None or trainer.training:
            return "fit"
        if trainer.sanity_checking or trainer.validating:
            return "validate"
        if trainer.testing:
            return "test"
        if trainer.predicting:
            return "predict"
        return "fit"

    def required_outputs(self) -> tuple[str, ...]:
        if self.outputs is not None:
            return self.outputs
        module = self.trainer.lightning_module if self.trainer is not None else None
        required = getattr(module, "required_inputs", None)
        return tuple(required) if required is not None else ("edge", "mask", "color_domain")

    def generator_for(self, batch: dict[str, Any], stage: str) -> torch.Generator:
        """Training draws from one generator per device, seeded once (per rank); evaluation
        re-seeds from the batch's first index so every epoch sees the same inputs."""
        device = batch["image"].device
        if stage == "fit":
            generator = self._train_generators.get(device)
            if generator is None:
                rank = self.trainer.global_rank if self.trainer is not None else 0
                generator = torch.Generator(device=device)
                generator.manual_seed(self.seed + 1_000_003 * rank)
                if str(device) in self._pending_states:
                    generator.set_state(self._pending_states.pop(str(device)))
                self._train_generators[device] = generator
            return generator
        generator = torch.Generator(device=device)
        generator.manual_seed(evaluation_seed(self.seed, batch))
        return generator

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints, so a resumed run continues the random draws instead of
        repeating those of its start: every rank's generators (``train_generators_by_rank``;
        a collective under DDP, as checkpoint saving is)."""
        states = {str(d): g.get_state() for d, g in self._train_generators.items()}
        return {"train_generators_by_rank": all_gather_object({**self._pending_states, **states})}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # checkpoints from before DDP support saved one rank's states
        by_rank = state_dict.get("train_generators_by_rank") or [
            state_dict.get("train_generators", {})
        ]
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if rank >= len(by_rank):
            warnings.warn(
                f"the checkpoint holds the preprocessing random state of {len(by_rank)} rank(s); "
                f"rank {rank} restarts its draws from the seed",
                stacklevel=2,
            )
        self._pending_states = dict(by_rank[rank]) if rank < len(by_rank) else {}
        self._train_generators.clear()

    def make_inputs(self, batch: dict[str, Any], stage: str = "fit") -> dict[str, Any]:
        """Turn ``{"image", "index"}`` into the phase's inputs on the batch's device."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
        if "image" not in batch:  # data.cache=device: the loader sent indices only
            batch = {**batch, "image": self._cached[STAGE_SPLITS[stage]].gather(batch["index"])}
        generator = self.generator_for(batch, stage)
        return self.maker(batch, stage, generator, self.required_outputs())

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if is_made(batch):  # data.preprocess_on=ahead | workers: made already
            return batch
        if isinstance(batch, dict) and ("image" in batch or "index" in batch):
            return self.make_inputs(batch, self.current_stage())
        return batch
