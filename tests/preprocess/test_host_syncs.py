"""What ``Preprocessor.forward`` reads back from the device, counted on the CPU as the training
step's test counts it (``tests/phases/test_host_syncs.py``).

Removed: the fork seeds (hashed from the generator's host-side state), every check of the drawn
per-sample values, K-means' convergence test, center masks and ``k`` maximum, the histogram
median's reads of the largest kernel and of the levels' range (all bounded by the drawn ranges:
``draw_maxima``), the evaluation kernel sizes. The colour domain's GPU path (the histogram median)
makes no sync at all. Left, and allowed here:

- Canny (``edges.py``): the ``sigma > 0`` check, and its sparse non-maximum suppression and
  hysteresis, which work on the pixels above the low threshold (``nonzero``: a data-dependent
  count) and grow the connected edges until nothing changes (``equal`` once per round). A dense
  version would do a full-image pass per round for as many rounds as the longest edge needs.
- OpenCV's median on the CPU (``median.py``): the kernel sizes go to ``cv2.medianBlur`` as
  Python ints; on CPU tensors that is no device sync, and GPUs take the batched path.
- ``median(method="radix")`` (not the default anywhere): one read per bit, to size its
  compaction of the prefixes present.
- The drawn-lines restyling (``drawn.py``, off by default: ``drawn_edges=0``) is not covered: it
  picks the restyled samples (``nonzero``) and thins strokes until nothing changes.
"""

from __future__ import annotations

import collections
import traceback

import torch
from torch.overrides import TorchFunctionMode

from pirec_lightning.preprocess.color import color_domain
from pirec_lightning.preprocess.confusion import Preprocessor, draw_maxima, fork_seeds
from pirec_lightning.preprocess.median import median_levels
from tests.phases.test_host_syncs import SYNCING

ALLOWED = {
    ("__bool__", "preprocess/edges.py"),  # sigma > 0
    ("nonzero", "preprocess/edges.py"),  # pixels above the low threshold
    ("equal", "preprocess/edges.py"),  # hysteresis: until the edges stop growing
    ("tolist", "preprocess/median.py"),  # kernel sizes for cv2.medianBlur (CPU only)
}


class SyncCalls(TorchFunctionMode):
    """Records syncing calls with the innermost ``preprocess/`` file that made them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            package = "/pirec_lightning/preprocess/"
            frames = [f.filename for f in traceback.extract_stack() if package in f.filename]
            self.calls.append((name, "preprocess/" + frames[-1].rsplit(package, 1)[-1]))
        return func(*args, **(kwargs or {}))


def test_preprocessor_forward_syncs_only_in_canny_and_opencv():
    preprocessor = Preprocessor(64)
    images = torch.rand(4, 3, 64, 64)
    for stage in ("fit", "validate"):
        calls = SyncCalls()
        with calls:
            out = preprocessor(images, stage)
        assert sorted(out) == ["color_domain", "edge", "image", "mask"]
        where = collections.Counter(calls.calls)
        assert set(where) <= ALLOWED, calls.calls
        assert where[("tolist", "preprocess/median.py")] == 2  # the two medians
        # the rest is Canny's: one check, one nonzero, a few hysteresis rounds
        assert where[("__bool__", "preprocess/edges.py")] == 1
        assert where[("nonzero", "preprocess/edges.py")] == 1


def test_fork_seeds_are_reproducible_and_move_on():
    first, again = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    seeds = fork_seeds(first, 5)
    assert seeds == fork_seeds(again, 5) and len(set(seeds)) == 5
    assert all(0 <= s < 2**62 for s in seeds)
    assert fork_seeds(first, 5) != seeds  # the state moved on
    # the same seed gives the same inputs; another seed other ones
    images = torch.rand(2, 3, 32, 32)
    a = Preprocessor(32, seed=1)(images)
    b = Preprocessor(32, seed=1)(images)
    c = Preprocessor(32, seed=2)(images)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["mask"], c["mask"])


def test_color_domain_gpu_path_makes_no_sync_and_the_same_colors():
    """The histogram median (what CUDA runs) and K-means with the drawn maxima: no sync, and
    the colours the unbounded call (which reads the extremes back) gives."""
    images = torch.rand(4, 3, 64, 64)
    args = (
        images,
        torch.tensor([17, 15, 17, 13]),
        torch.tensor([2, 5, 3, 4]),
        torch.tensor([3, 1, 3, 3]),
    )
    maxima = draw_maxima(Preprocessor(64).confusion, 64, drawn=True)
    calls = SyncCalls()
    with calls:
        bounded = color_domain(
            *args, generator=torch.Generator().manual_seed(0), method="histogram", maxima=maxima
        )
    assert calls.calls == []
    plain = color_domain(*args, generator=torch.Generator().manual_seed(0), method="histogram")
    assert torch.equal(bounded, plain)


def test_median_bounds_change_nothing():
    levels = torch.randint(40, 90, (3, 2, 20, 24))  # a narrow range: the bounds widen it
    radius = torch.tensor([0, 2, 5])
    expected = median_levels(levels, radius)
    assert torch.equal(median_levels(levels, radius, max_radius=5, top=255), expected)
    flat = torch.zeros(1, 1, 6, 6, dtype=torch.long)
    assert torch.equal(median_levels(flat, torch.tensor([0]), max_radius=0, top=255), flat)


def test_trusted_draws_give_what_checked_values_give():
    """Evaluation draws go the trusted way; the same values fixed by hand are checked and read
    back: the same inputs."""
    preprocessor = Preprocessor(64)
    images = torch.rand(3, 3, 64, 64)
    generator = torch.Generator().manual_seed(5)
    trusted = preprocessor(images, "validate", generator=generator)
    generator = torch.Generator().manual_seed(5)
    checked = preprocessor(images, "validate", generator=generator, params={"k": 4})
    assert all(torch.equal(trusted[name], checked[name]) for name in trusted)


class HostData(TorchFunctionMode):
    """Records tensors made from Python data (on a GPU, each copy from pageable host memory
    waits for the stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "tensor":
            self.calls.append(traceback.format_stack(limit=3)[0])
        return func(*args, **(kwargs or {}))


def test_constants_are_made_once_not_per_batch():
    preprocessor = Preprocessor(64)
    images = torch.rand(2, 3, 64, 64)
    for stage in ("fit", "validate"):
        preprocessor(images, stage)  # the first call makes the cached constants
        made = HostData()
        with made:
            preprocessor(images, stage)
        assert made.calls == [], made.calls


def test_line_art_adds_no_host_sync():
    """``confusion.line_art``: the items' own line art replaces Canny with no read back."""
    preprocessor = Preprocessor(64, {"line_art": 0.5})
    images = torch.rand(4, 3, 64, 64)
    line_art = (torch.rand(4, 1, 64, 64) > 0.9).float()
    line_art[1] = -1  # an item without line art
    plain, with_art = SyncCalls(), SyncCalls()
    with plain:
        preprocessor(images, "fit", ("edge",), generator=torch.Generator().manual_seed(0))
    with with_art:
        preprocessor(
            images, "fit", ("edge",), generator=torch.Generator().manual_seed(0), line_art=line_art
        )
    assert collections.Counter(with_art.calls) == collections.Counter(plain.calls)
