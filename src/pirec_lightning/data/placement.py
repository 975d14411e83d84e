"""Where the training inputs are made (``data.preprocess_on``).

``device``
    in :meth:`~pirec_lightning.data.PIRECDataModule.on_after_batch_transfer`, on the batch's
    device, in series with the step: the step waits for its inputs.
``ahead``
    the same engine on the same device, one batch ahead: a background thread takes the next
    batch from the DataLoader, moves it to the device and makes its inputs on a side CUDA stream
    while the current step runs on the default stream (:class:`AheadLoader`). The step's stream
    waits on an event recorded after the inputs, and the tensors are marked as used by it
    (``record_stream``), so neither reads early nor frees early. The random draws happen in the
    same order as with ``device``: the batches are identical. On the CPU the thread still
    overlaps the inputs with the step (torch ops release the GIL), without streams.
``workers``
    the engine on the CPU in the DataLoader's worker processes (one thread each), as PI-REC and
    EdgeConnect made their inputs: pays on hosts with many cores per GPU. Each worker draws from
    its own generator; evaluation inputs are the same as with ``device`` on the CPU (seeded from
    the batch's first index).

Resuming restarts the draws of ``workers`` from a seed that depends on the step it resumes at;
``ahead`` has drawn a few batches further than the step a checkpoint is saved at (the batches
made and waiting, and the one Lightning's loop fetched ahead; how many depends on timing), so a
resumed run continues from there rather than exactly where the checkpoint stands.
"""

from __future__ import annotations

import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate, get_worker_info

from pirec_lightning.preprocess.confusion import Preprocessor

PLACEMENTS = ("device", "ahead", "workers")
#: keys only a made batch has: a batch with one of them is not made again
MADE_KEYS = ("edge", "mask", "color_domain")


def check_placement(placement: str, cache: str = "none") -> str:
    """Return ``placement`` if valid with ``cache``, else raise one clear ValueError."""
    if placement not in PLACEMENTS:
        raise ValueError(
            f"data.preprocess_on must be one of {', '.join(PLACEMENTS)}, got {placement!r}: "
            "e.g. data.preprocess_on=ahead"
        )
    if placement == "workers" and cache == "device":
        raise ValueError(
            "data.preprocess_on=workers makes the inputs on the host, but data.cache=device keeps "
            "the images on the device: use data.cache=ram (or none) with it"
        )
    return placement


def is_made(batch: Any) -> bool:
    """Whether ``batch`` already carries its inputs (made ahead or in the workers)."""
    return isinstance(batch, dict) and any(key in batch for key in MADE_KEYS)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value
        for key, value in batch.items()
    }


def _tensors(batch: dict[str, Any]) -> list[Tensor]:
    return [value for value in batch.values() if isinstance(value, Tensor)]


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(ready: queue.Queue, stop: threading.Event, item: Any) -> bool:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _make_ahead(
    batches: Iterator[Any],
    prepare: Callable[[dict[str, Any]], dict[str, Any]],
    device: torch.device,
    stream: torch.cuda.Stream | None,
    ready: queue.Queue,
    stop: threading.Event,
) -> None:
    """The thread of :class:`_Ahead`. It holds no reference to the iterator, so an iterator
    nobody reads any more is collected, and its ``__del__`` stops the thread."""
    try:
        for batch in batches:
            if stop.is_set():
                return
            if stream is None:
                item: Any = (prepare(_to_device(batch, device)), None)
            else:
                with torch.cuda.device(device), torch.cuda.stream(stream):
                    made = prepare(_to_device(batch, device))
                    event = torch.cuda.Event()
                    event.record(stream)
                item = (made, event)
            if not _put(ready, stop, item):
                return
    except BaseException as error:  # surfaces in the training loop's thread, unchanged
        _put(ready, stop, _Failure(error))
        return
    _put(ready, stop, _END)


class _Ahead(Iterator[dict[str, Any]]):
    """Batches of ``batches`` made by ``prepare`` on ``device`` in a thread, ``depth`` ahead,
    on ``stream`` (a CUDA side stream; None: in the thread's current stream, as on the CPU)."""

    def __init__(
        self,
        batches: Iterator[Any],
        prepare: Callable[[dict[str, Any]], dict[str, Any]],
        device: torch.device,
        depth: int = 1,
        stream: torch.cuda.Stream | None = None,
    ) -> None:
        self._device = device
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        if stream is not None:  # what the step's stream made so far (a device cache) is ready
            stream.wait_stream(torch.cuda.current_stream(device))
        self._thread = threading.Thread(
            target=_make_ahead,
            args=(batches, prepare, device, stream, self._ready, self._stop),
            name="pirec-inputs-ahead",
            daemon=True,
        )
        self._thread.start()

    def __next__(self) -> dict[str, Any]:
        while True:
            try:
                item = self._ready.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._ready.empty():
                    raise RuntimeError(
                        "the input thread of data.preprocess_on=ahead died"
                    ) from None
        if item is _END:
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        made, event = item
        if event is not None:
            stream = torch.cuda.current_stream(self._device)
            stream.wait_event(event)
            for tensor in _tensors(made):  # made on the side stream, freed after the step's use
                if tensor.device.type == "cuda":
                    tensor.record_stream(stream)
        return made

    def close(self) -> bool:
        """Stop the thread (it takes no further batch) and wait for it; False if it is still
        waiting for a batch after 10 s."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        return not self._thread.is_alive()

    def __del__(self) -> None:
        self._stop.set()


class AheadLoader(DataLoader):
    """A DataLoader whose batches arrive with their inputs made, one batch ahead
    (``data.preprocess_on=ahead``; see the module's docstring).

    Args:
        prepare: ``batch on the device -> batch with its inputs``
            (:meth:`~pirec_lightning.data.PIRECDataModule.make_inputs` for the loader's stage).
        device: where the inputs are made (the trainer's root device).
        depth: made batches kept ready (GPU memory: one batch of images and inputs each).
        owner: who made the loader (the data module closes its loaders' threads with
            :func:`close_loaders`; a loader Lightning re-creates keeps it).
        *args, **kwargs: those of :class:`torch.utils.data.DataLoader` (Lightning re-creates
            the loader with a distributed sampler under DDP, through the same arguments).
    """

    def __init__(
        self,
        *args: Any,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        device: torch.device | str = "cpu",
        depth: int = 1,
        owner: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.prepare = prepare
        self.device = torch.device(device)
        self.depth = int(depth)
        self.owner = owner
        self._current: _Ahead | None = None
        self._stream: torch.cuda.Stream | None = None  # one side stream for every epoch
        _LOADERS.add(self)

    def close(self) -> None:
        """Stop the thread of the current epoch, if any.

        Raises:
            RuntimeError: the thread still waits for a batch after 10 s.
        """
        current, self._current = self._current, None
        if current is not None and not current.close():
            raise RuntimeError(
                "the input thread of data.preprocess_on=ahead still waits for a batch after 10 s; "
                "use data.preprocess_on=device if the DataLoader hangs"
            )

    def __iter__(self) -> Iterator[Any]:
        self.close()  # never two threads on one (persistent) worker iterator
        batches = super().__iter__()
        if self.prepare is None:
            return batches
        if self.device.type == "cuda" and self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        self._current = _Ahead(batches, self.prepare, self.device, self.depth, self._stream)
        return self._current


#: every AheadLoader alive, for :func:`close_loaders`
_LOADERS: weakref.WeakSet[AheadLoader] = weakref.WeakSet()


def close_loaders(owner: Any) -> None:
    """Stop the threads of every :class:`AheadLoader` ``owner`` made (Lightning's copies
    included): before the DataLoader's workers shut down, and on the way out of an error."""
    for loader in list(_LOADERS):
        if loader.owner is owner:
            try:
                loader.close()
            except RuntimeError as error:  # on the way out: said, not raised
                warnings.warn(str(error), stacklevel=2)


def evaluation_seed(seed: int, batch: dict[str, Any]) -> int:
    """The seed of an evaluation batch's draws: from its first index, the same every epoch."""
    first = int(batch["index"][0]) if len(batch["index"]) else 0
    return seed + 7919 * (first + 1)


class InputMaker:
    """``(batch, stage, generator) -> batch with its inputs``: the augmentation (training only),
    the line-art channel split and the :class:`Preprocessor` of the batch's image size.

    Picklable, so the DataLoader's workers can hold one (``preprocess_on=workers``).
    """

    def __init__(self, preprocessor: Preprocessor, augmentation: Any = None) -> None:
        self.preprocessor = preprocessor
        self.augmentation = augmentation
        # one Preprocessor per image size (extra validation sets may have their own)
        self._by_size = {preprocessor.image_size: preprocessor}

    def for_size(self, size: int) -> Preprocessor:
        if size not in self._by_size:
            base = self.preprocessor
            self._by_size[size] = Preprocessor(
                size, base.confusion, base.enabled, base.seed, backend=base.backend
            )
        return self._by_size[size]

    def __call__(
        self,
        batch: dict[str, Any],
        stage: str,
        generator: torch.Generator,
        outputs: tuple[str, ...] = MADE_KEYS,
    ) -> dict[str, Any]:
        with torch.no_grad():
            images = batch["image"]
            if stage == "fit" and self.augmentation is not None:
                images = self.augmentation(images)
            line_art = None
            if images.shape[1] == 4:  # data=avatars: RGB + line art (all -1 where there is none)
                images, line_art = images[:, :3], images[:, 3:]
            made = self.for_size(min(images.shape[-2:]))(
                images, stage=stage, outputs=outputs, generator=generator, line_art=line_art
            )
        return {**batch, **made}


class WorkerInputs:
    """``collate_fn`` that makes the inputs in the DataLoader's worker (``preprocess_on=workers``).

    Args:
        maker: the data module's :class:`InputMaker`.
        outputs: the inputs to make (the phase's ``required_inputs``).
        stage: ``fit`` draws from one generator per worker; other stages seed from the batch's
            first index (:func:`evaluation_seed`), as ``device`` does.
        seed: the data module's seed.
        train_seed: the base of the workers' training seeds (the data module adds the rank and
            the step the loader starts at, so a resumed run does not repeat its first draws).
    """

    def __init__(
        self,
        maker: InputMaker,
        stage: str,
        outputs: tuple[str, ...],
        seed: int,
        train_seed: int,
    ) -> None:
        self.maker = maker
        self.outputs = tuple(outputs)
        self.stage = stage
        self.seed = int(seed)
        self.train_seed = int(train_seed)
        self._generator: torch.Generator | None = None

    def _train_generator(self) -> torch.Generator:
        if self._generator is None:  # made in the worker: each has its own stream of draws
            info = get_worker_info()
            worker = info.id + 1 if info is not None else 0
            self._generator = torch.Generator().manual_seed(self.train_seed + 7919 * worker)
        return self._generator

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(items)
        if self.stage == "fit":
            generator = self._train_generator()
        else:
            generator = torch.Generator().manual_seed(evaluation_seed(self.seed, batch))
        return self.maker(batch, self.stage, generator, self.outputs)
