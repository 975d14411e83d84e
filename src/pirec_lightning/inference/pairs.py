"""Folder mode of ``pirec reconstruct``: edge/color file pairs -> ``trainer.predict`` -> PNGs.

Pairs are found by the names PI-REC's examples use, in any subfolder: ``N_e.png`` + ``N_c.png``,
``N_edge.png`` + ``N_color.png`` and ``N_edge.png`` + ``N_cd.png``. Results are written as
``<output_dir>/<subfolder>/N_out.png`` (the release's own name for its outputs).

One run per output folder: :func:`hold_output_dir` locks ``<output_dir>/.pirec-reconstruct.lock``
(an exclusive ``flock``, dropped by the kernel however the process ends), so a second
``pirec reconstruct`` into the same folder stops with one line. Every output is written whole
(a temporary file renamed over the name), in a thread while the next batch runs. Ctrl-C stops
after the batch in progress is written: :class:`~pirec_lightning.errors.RunInterrupted` (exit
130) says how many were written, and ``skip_existing`` (``--skip-existing``) goes on from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, Sampler

from pirec_lightning.data.folder import IMAGE_EXTENSIONS
from pirec_lightning.errors import OutputError, RunInterrupted
from pirec_lightning.inference.inputs import (
    edge_names,
    to_edge_batch,
    to_image_batch,
    warn_unlikely_edges,
)
from pirec_lightning.inference.reconstructor import (
    check_input_size,
    check_outputs,
    check_same_size,
    resize_inputs,
    resolve_device,
    save_images,
)
from pirec_lightning.models.precision import mixed_precision
from pirec_lightning.preprocess.drawn import prepare_edges

__all__ = [
    "LOCK_FILE",
    "PAIR_SUFFIXES",
    "Pair",
    "PairDataset",
    "Progress",
    "find_pairs",
    "hold_output_dir",
    "reconstruct_folder",
    "unpaired_files",
]

#: the lock file of an output folder a ``pirec reconstruct`` writes into
LOCK_FILE = ".pirec-reconstruct.lock"
#: at most this many unpaired files are named in a message
SHOWN_UNPAIRED = 5

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
    paired = {path for _, edge, color in pairs.values() for path in (edge, color)}
    unpaired = [p for p in files if p not in paired]
    if not pairs:
        schemes = ", ".join(f"N{e}.png + N{c}.png" for e, c in PAIR_SUFFIXES)
        found = f": {unpaired_files(root, unpaired)}" if unpaired else " (no image files)"
        raise ValueError(
            f"no edge/color pairs in {root} (looked for {schemes}, recursively){found}"
        )
    halves = [p for p in unpaired if _half_of_a_pair(p.stem)]  # not outputs, notes...
    if halves:
        warnings.warn(
            f"files without a partner in {root} are skipped: {unpaired_files(root, halves)}",
            stacklevel=2,
        )
    return [pairs[name] for name in sorted(pairs)]


def _half_of_a_pair(stem: str) -> bool:
    suffixes = {suffix for pair in PAIR_SUFFIXES for suffix in pair}
    return any(stem.endswith(s) and stem[: -len(s)] for s in suffixes)


def unpaired_files(root: Path, files: Sequence[Path]) -> str:
    """What each of ``files`` (image files of no pair) lacks, as one line: ``1_e.png has no
    1_c.png, notes.png is no N_e/N_c name``; the first :data:`SHOWN_UNPAIRED`, then a count."""
    said = []
    for path in sorted(files):
        name = path.relative_to(root).as_posix()
        stem, suffix = path.stem, path.suffix
        wanted = []
        for edge_suffix, color_suffix in PAIR_SUFFIXES:
            for mine, theirs in ((edge_suffix, color_suffix), (color_suffix, edge_suffix)):
                if stem.endswith(mine) and stem[: -len(mine)]:
                    wanted.append(stem[: -len(mine)] + theirs + suffix)
        if wanted:
            said.append(f"{name} has no {' or '.join(dict.fromkeys(wanted))}")
        else:
            said.append(f"{name} is not named N_e/N_c, N_edge/N_color or N_edge/N_cd")
    more = len(said) - SHOWN_UNPAIRED
    return "; ".join(said[:SHOWN_UNPAIRED]) + (f"; and {more} more" if more > 0 else "")


class PairDataset(Dataset):
    """Items ``{"edge": (1, h, w) in {0, 1}, "color_domain": (3, h, w) in [0, 1], "index": i,
    "size": (2,) the files' (H, W)}``, files read as :meth:`Reconstructor.reconstruct` reads
    them; (h, w) is ``run_shape(H, W)`` (the size the model runs at; default the files' own)."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        edge_polarity: str = "auto",
        edge_style: str = "canny",
        run_shape: Callable[[int, int], tuple[int, int]] | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.edge_polarity = edge_polarity
        self.edge_style = edge_style
        self.run_shape = run_shape

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, edge_path, color_path = self.pairs[index]
        edge = to_edge_batch(edge_path, self.edge_polarity, warn=False)
        color = to_image_batch(color_path)
        try:
            check_same_size(edge, color)
        except ValueError as error:
            raise ValueError(f"pair {edge_path.name} + {color_path.name}: {error}") from None
        size = tuple(edge.shape[-2:])
        check_input_size(*size, name=str(edge_path))  # before any warning: the error alone
        warn_unlikely_edges(edge, edge_names(edge_path, 1))
        if self.run_shape is not None:
            edge, color = resize_inputs(edge, color, self.run_shape(*size))
        edge = prepare_edges(edge, self.edge_style)
        return {
            "edge": edge[0],
            "color_domain": color[0],
            "index": index,
            "size": torch.tensor(size),
        }


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


class Progress:
    """``reconstructed 8 of 80 (10 %), 2.3 images/s, about 31 s left`` on ``stream`` (stderr):
    rewritten in place on a terminal, else a plain line at the first and last image and every
    :attr:`every` seconds between."""

    def __init__(self, total: int, stream: TextIO | None = None, every: float | None = None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.5 if self.tty else 10.0)
        self.start = time.perf_counter()
        self.last_said = -float("inf")
        self.lock = threading.Lock()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"reconstructed {self.done} of {self.total} ({100 * self.done // self.total} %)"
        if rate > 0:
            text += f", {rate:.1f} images/s"
            if self.done < self.total:
                text += f", about {_duration((self.total - self.done) / rate)} left"
        return text

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count
            now = time.perf_counter()
            first = self.done == count
            if not (first or self.done >= self.total or now - self.last_said >= self.every):
                return
            self.last_said = now
            if self.tty:
                end = "\n" if self.done >= self.total else ""
                print(f"\r\033[K{self.line()}", end=end, file=self.stream, flush=True)
            else:
                print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """Ends an unfinished line on a terminal (an interrupted run)."""
        if self.tty and 0 < self.done < self.total:
            print(file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _Stop(Exception):
    """Raised after a batch when Ctrl-C asked the folder run to stop."""


class PairWriter(BasePredictionWriter):
    """Writes each predicted batch as ``N_out.png`` (and ``N_preliminary.png`` if asked), in a
    thread while the next batch runs (at most two batches waiting), each file whole."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        output_dir: Path,
        preliminary: bool = False,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.pairs, self.output_dir, self.preliminary = list(pairs), output_dir, preliminary
        self.progress = progress
        self.written: list[Path] = []
        self.stop_requested = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pirec-writer")
        self._pending: list[Future] = []

    def _write(self, output, preliminary, names: list[str]) -> None:
        paths = [self.output_dir / f"{name}_out.png" for name in names]
        if preliminary is not None:
            save_images(preliminary, [self.output_dir / f"{n}_preliminary.png" for n in names])
        save_images(output, paths)
        self.written += paths
        if self.progress is not None:
            self.progress.add(len(paths))

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        names = [self.pairs[int(i)][0] for i in prediction["index"]]
        output = prediction["output"].detach().cpu()
        preliminary = prediction["preliminary"].detach().cpu() if self.preliminary else None
        self._pending.append(self._pool.submit(self._write, output, preliminary, names))
        while len(self._pending) > 2 or (self._pending and self._pending[0].done()):
            self._pending.pop(0).result()  # a write that failed raises here
        if self.stop_requested:
            raise _Stop

    def finish(self) -> None:
        """Waits for the writes in flight; raises the first that failed."""
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:
            self._pool.shutdown(wait=True)


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
    # "GPU available: False, used: False" and its kind: nothing to act on in a predict run
    chatter = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    try:
        return pl.Trainer(
            logger=False,
            callbacks=callbacks,
            enable_model_summary=False,
            enable_checkpointing=False,  # predicts only (and no checkpointing tip)
            enable_progress_bar=False,  # reconstruct_folder says how far it is (Progress)
            **kwargs,
        )
    finally:
        chatter.setLevel(level)


@contextlib.contextmanager
def hold_output_dir(output_dir: str | Path) -> Iterator[Path]:
    """Hold ``output_dir`` (created if needed) for one folder run while the block runs: an
    exclusive ``flock`` on ``<output_dir>/.pirec-reconstruct.lock`` recording who holds it,
    removed on the way out. A lock left by a process that ended is free again (the kernel drops
    a flock with its process). Where ``flock`` is not available the folder is not locked.

    Raises:
        OutputError: another live process holds it (one line naming its PID and since when).
    """
    folder = Path(output_dir).expanduser()
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            os.close(fd)
            since = time.strftime("%H:%M:%S", time.localtime(record.get("since", 0)))
            holder = f"PID {record.get('pid', '?')} on {record.get('host', '?')}, since {since}"
            raise OutputError(
                f"output folder {folder} is in use by another pirec reconstruct ({holder}); "
                "wait for it to finish, or choose another --output-dir"
            ) from None
        except OSError:  # a filesystem without flock: write unlocked
            os.close(fd)
            yield folder
            return
        try:  # the file locked must still be the one at that path (not one just released)
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise OutputError(f"cannot lock output folder {folder}: its lock file keeps changing")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)


def _read_record(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _stop_on_ctrl_c(writer: PairWriter) -> Iterator[None]:
    """The first Ctrl-C asks ``writer`` to stop after the batch in progress; a second one
    interrupts at once (the main thread only: signals are delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def ask_to_stop(signum, frame) -> None:
        writer.stop_requested = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C: at once

    signal.signal(signal.SIGINT, ask_to_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
    skip_existing: bool = False,
    progress: bool | Progress = False,
    callbacks: Sequence[pl.Callback] = (),
) -> list[Path]:
    """Reconstruct every pair of ``input_dir`` into ``output_dir`` through ``trainer.predict``.

    Nothing is written unless every output can be: an input file is never written over, and an
    existing output only with ``overwrite`` (PI-REC's examples ship their own ``N_out.png``);
    with ``skip_existing`` the pairs whose outputs exist are left out instead (an interrupted
    run goes on). The output folder is held (:func:`hold_output_dir`) while the run writes.

    A reconstructor with a ``run_shape`` method (:class:`Reconstructor`: ``run_size``) gets
    its inputs at that size and writes outputs at the files' size. ``progress``: print
    :class:`Progress` lines on stderr (True) or to the one given. ``callbacks``: more
    Lightning callbacks for the predict Trainer.

    Returns:
        The written ``N_out.png`` paths.

    Raises:
        ValueError: ``batch_size`` below 1, or no pairs in ``input_dir``.
        OutputError: an output is an input, exists (without ``overwrite`` or
            ``skip_existing``), cannot be written, or another run holds ``output_dir``.
        RunInterrupted: Ctrl-C (exit code 130): how many were written and how to go on.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size!r}")
    if overwrite and skip_existing:
        raise ValueError("--overwrite and --skip-existing exclude each other: choose one")
    pairs = find_pairs(input_dir)
    output_dir = Path(output_dir).expanduser()
    if not output_dir.is_dir():
        check_outputs([output_dir / "probe.png"])  # a file in the way: one line, before locking
    with hold_output_dir(output_dir):
        if skip_existing:
            pairs = [p for p in pairs if not _outputs_exist(output_dir, p[0], preliminary)]
        names = [f"{name}_out.png" for name, _, _ in pairs]
        names += [f"{name}_preliminary.png" for name, _, _ in pairs] if preliminary else []
        inputs = [path for _, edge, color in pairs for path in (edge, color)]
        check_outputs(
            [output_dir / name for name in names],
            inputs,
            overwrite,
            "--skip-existing to keep the outputs there and do the rest",
        )
        if not pairs:
            return []
        shape = getattr(reconstructor, "run_shape", None)
        loader = DataLoader(
            PairDataset(pairs, edge_polarity, edge_style, shape),
            batch_sampler=SameSizeBatches(pairs, batch_size),
            num_workers=num_workers,
        )
        if progress is True:
            progress = Progress(len(pairs))
        writer = PairWriter(pairs, output_dir, preliminary, progress or None)
        trainer = trainer_for(device, [writer, *callbacks])
        try:
            with warnings.catch_warnings(), _stop_on_ctrl_c(writer):
                # SameSizeBatches returns every index; Lightning cannot see that in a sampler
                warnings.filterwarnings("ignore", "You are using a custom batch sampler")
                # raised inside Lightning itself, nothing a user can act on
                warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)")
                trainer.predict(reconstructor, dataloaders=loader, return_predictions=False)
        except _Stop:
            writer.finish()
            if progress:
                progress.close()
            raise RunInterrupted(
                f"interrupted: {len(writer.written)} of {len(pairs)} written to {output_dir}; "
                "to go on, run the same command with --skip-existing"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                writer.finish()  # what was reconstructed is kept, whole
            raise
        writer.finish()
    return writer.written


def _outputs_exist(output_dir: Path, name: str, preliminary: bool) -> bool:
    suffixes = ("_out.png", "_preliminary.png") if preliminary else ("_out.png",)
    return all((output_dir / f"{name}{suffix}").is_file() for suffix in suffixes)
