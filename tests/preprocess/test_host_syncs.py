"""What ``Preprocessor.forward`` reads back from the device, counted on the CPU as the training
step's test counts it (``tests/phases/test_host_syncs.py``).

Removed: the fork seeds (hashed from the generator's host-side state), every check of the drawn
per-sample values, K-means' convergence test, center masks and ``k`` maximum (``k_max`` from the
drawn range), the evaluation kernel sizes. Left, and allowed here:

- Canny (``edges.py``): the ``sigma > 0`` check, and its sparse non-maximum suppression and
  hysteresis, which work on the pixels above the low threshold (``nonzero``: a data-dependent
  count) and grow the connected edges until nothing changes (``equal`` once per round). A dense
  version would do a full-image pass per round for as many rounds as the longest edge needs.
- OpenCV's median on the CPU (``median.py``): the kernel sizes go to ``cv2.medianBlur`` as
  Python ints; on CPU tensors that is no device sync, and GPUs take the batched path.
- The drawn-lines restyling (``drawn.py``, off by default: ``drawn_edges=0``) is not covered: it
  picks the restyled samples (``nonzero``) and thins strokes until nothing changes.
"""

from __future__ import annotations

import collections
import traceback

import torch
from torch.overrides import TorchFunctionMode

from pirec_lightning.preprocess.confusion import Preprocessor, fork_seeds
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
