"""Batched K-means color quantization: every pixel takes its cluster's mean color.

PI-REC runs ``cv2.kmeans`` per image (k-means++ seeding, 8 attempts). Here all images of a
batch are clustered at once on their device: greedy k-means++ seeding and Lloyd iterations on
a random sample of pixels per image, then one assignment of every pixel and a mean over all of
them. A per-sample K runs with K_max centroids and the surplus ones masked out.

Passes, per image at the defaults (1024-pixel sample, 4 attempts, 10 Lloyd steps): the seeding,
2 Lloyd steps on the 4 attempts, one error pass that keeps the best attempt, 8 Lloyd steps on it
alone, then the assignment of all pixels. Running all 4 attempts through all 10 steps (as
before; ``narrow_after=None``) costs about 1.5x the point-to-center distances for the same
error against ``cv2.kmeans`` (``benchmarks/preprocess.py``). The step count is fixed: there is
no convergence test reading labels back to the host (a converged clustering is a fixed point of
a Lloyd step, so the extra steps change nothing), and nothing else in K-means syncs when
``k_max`` is given.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import check_images, per_sample

# k-means++ draws per new center, as scikit-learn's 2 + log(k) for PI-REC's k <= 5.
_TRIALS = 3
#: Lloyd steps all attempts take before only the best one per image goes on
NARROW_AFTER = 2


def kmeans_quantize(
    images: Tensor,
    k: int | Tensor,
    iterations: int = 10,
    *,
    sample_size: int = 1024,
    attempts: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Quantize each image to ``k`` colors with K-means; each pixel becomes its cluster's mean.

    Args:
        images: (B, 3, H, W) float in [0, 1].
        k: number of colors, an int >= 1 or a (B,) integer tensor, one per sample.
        iterations: Lloyd iterations on the pixel sample.
        sample_size: pixels drawn (with replacement) per image for seeding and the Lloyd
            iterations; images with at most this many pixels use all of them.
        attempts: seedings run side by side per image; the one with the least error on the
            sample wins (``cv2.kmeans`` in PI-REC: 8).
        generator: random generator on the images' device, for reproducible results.

    Returns:
        (B, 3, H, W) in [0, 1], at most ``k`` distinct colors per image; same dtype as
        ``images``.

    Example:
        >>> images = torch.rand(2, 3, 16, 16)
        >>> colors = kmeans_quantize(images, torch.tensor([2, 4]))
        >>> [len(c.flatten(1).unique(dim=1).T) for c in colors]
        [2, 4]
    """
    labels, colors = kmeans_colors(
        images, k, iterations, sample_size=sample_size, attempts=attempts, generator=generator
    )
    return _paint(labels, colors).to(images.dtype)


class KMeansQuantize(nn.Module):
    r"""Module form of :func:`kmeans_quantize`.

    Args:
        k: number of colors, an int >= 1 or a (B,) integer tensor, one per sample.
        iterations: Lloyd iterations on the pixel sample.
        sample_size: pixels drawn per image for seeding and the Lloyd iterations.
        attempts: seedings run side by side per image; the best on the sample wins.

    Shape:
        - Input: (B, 3, H, W) float in [0, 1].
        - Output: (B, 3, H, W) in [0, 1].

    Example:
        >>> quantize = KMeansQuantize(3)
        >>> quantize(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self, k: int | Tensor, iterations: int = 10, sample_size: int = 1024, attempts: int = 4
    ) -> None:
        super().__init__()
        if not isinstance(k, Tensor):
            per_sample(k, 1, name="k")
        self.k = k
        self.iterations = iterations
        self.sample_size = sample_size
        self.attempts = attempts

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return kmeans_quantize(
            images,
            self.k,
            self.iterations,
            sample_size=self.sample_size,
            attempts=self.attempts,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, iterations={self.iterations}, sample_size={self.sample_size}, "
            f"attempts={self.attempts}"
        )


def kmeans_colors(
    images: Tensor,
    k: int | Tensor,
    iterations: int = 10,
    *,
    sample_size: int = 1024,
    attempts: int = 4,
    generator: torch.Generator | None = None,
    narrow_after: int | None = NARROW_AFTER,
    k_max: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Cluster the pixels of each image; the labels and colors behind :func:`kmeans_quantize`.

    Args: as :func:`kmeans_quantize`, and

        narrow_after: Lloyd steps the ``attempts`` take side by side before only the one with
            the least sample error goes on (None: all of them take every step).
        k_max: the largest ``k`` in the batch when the caller knows it (e.g. the top of the
            drawn range): ``k`` is then trusted to lie in [1, k_max] and never read back from
            the device (neither checked nor maximized). A larger value changes nothing but the
            size of ``colors``.

    Returns:
        labels: (B, H, W) int64 in [0, k_b), each pixel's cluster.
        colors: (B, K_max, 3) float32 (float64 for float64 input), each cluster's mean color
            over all its pixels; unused or empty clusters keep their last centroid.

    Example:
        >>> labels, colors = kmeans_colors(torch.rand(2, 3, 8, 8), torch.tensor([2, 3]))
        >>> labels.shape, colors.shape, int(labels[0].max()) < 2
        (torch.Size([2, 8, 8]), torch.Size([2, 3, 3]), True)
    """
    check_images(images, channels=3)
    if iterations < 0 or sample_size < 1 or attempts < 1:
        raise ValueError(
            "need iterations >= 0, sample_size >= 1 and attempts >= 1, "
            f"got {iterations}, {sample_size}, {attempts}"
        )
    batch, _, height, width = images.shape
    device = images.device
    counts = per_sample(k, batch, name="k", device=device, check=k_max is None)
    if k_max is None:
        k_max = int(counts.max()) if batch else 1
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    pixels = images.to(dtype).flatten(2)  # (B, 3, N): channels first, reductions run outermost
    if pixels.numel() == 0:
        labels = torch.zeros(batch, height, width, dtype=torch.long, device=device)
        return labels, pixels.new_zeros(batch, k_max, 3)
    n_pixels = pixels.shape[2]
    active = torch.arange(k_max, device=device) < counts.unsqueeze(1)  # (B, K)

    if sample_size < n_pixels:
        pick = torch.randint(n_pixels, (batch, 1, sample_size), generator=generator, device=device)
        sample = pixels.gather(2, pick.expand(-1, 3, -1))
    else:
        sample = pixels
    # Several seedings per image side by side; after ``narrow_after`` Lloyd steps only the one
    # with the least sample error goes on. A fixed number of steps (no convergence test, which
    # would read the labels back to the host): a converged clustering is a fixed point of a
    # Lloyd step, so further steps change nothing.
    tries = active.repeat_interleave(attempts, dim=0)
    repeated = sample.repeat_interleave(attempts, dim=0)  # (B * attempts, 3, S), made once
    centers = _seed(repeated, k_max, generator)
    narrow = iterations if narrow_after is None else min(narrow_after, iterations)
    for step in range(iterations + 1):
        if step == narrow and centers.shape[0] > batch:
            centers = _best_attempt(repeated, centers, tries, batch, attempts)
            tries = active
        if step == iterations:
            break
        points = sample if centers.shape[0] == batch else repeated
        labels, _ = _assign(points, centers, tries)
        centers = _means(points, labels, centers)
    labels, _ = _assign(pixels, centers, active)
    colors = _means(pixels, labels, centers)
    return labels.view(batch, height, width), colors


def _best_attempt(
    repeated: Tensor, centers: Tensor, tries: Tensor, batch: int, attempts: int
) -> Tensor:
    """(B * attempts, K, 3) centers -> (B, K, 3): per image the attempt with the least error
    on its sample (``repeated``: the (B, 3, S) sample repeated per attempt)."""
    _, distance = _assign(repeated, centers, tries)
    error = distance.sum(1).view(batch, attempts)
    best = error.argmin(1) + torch.arange(batch, device=centers.device) * attempts
    return centers[best]


def _seed(sample: Tensor, k_max: int, generator: torch.Generator | None) -> Tensor:
    """Greedy k-means++ (as scikit-learn): each new center is the best of a few D²-draws.

    The number of draws per center is fixed, so a sample's first k centers do not depend on
    how many more the batch needs (per-sample K equals K for the whole batch).

    Args:
        sample: (B, 3, S) pixels.

    Returns:
        (B, k_max, 3) centers.
    """
    batch, _, size = sample.shape
    device = sample.device
    first = torch.randint(size, (batch, 1, 1), generator=generator, device=device)
    centers = [sample.gather(2, first.expand(-1, 3, -1)).transpose(1, 2)]  # each (B, 1, 3)
    nearest = _squared_distances(sample, centers[0]).squeeze(2)  # (B, S)
    for _ in range(1, k_max):
        # A flat image has nothing to spread over: draw uniformly then.
        weights = nearest + (nearest.sum(1, keepdim=True) == 0).to(nearest.dtype)
        draws = torch.multinomial(weights, _TRIALS, replacement=True, generator=generator)
        candidates = sample.gather(2, draws.unsqueeze(1).expand(-1, 3, -1)).transpose(1, 2)
        # (B, S, T): each pixel's distance to its nearest center if that candidate joined.
        closer = torch.minimum(nearest.unsqueeze(2), _squared_distances(sample, candidates))
        best = closer.sum(1).argmin(1)  # (B,)
        centers.append(candidates.gather(1, best.view(batch, 1, 1).expand(-1, 1, 3)))
        nearest = closer.gather(2, best.view(batch, 1, 1).expand(-1, size, 1)).squeeze(2)
    return torch.cat(centers, dim=1)


def _squared_distances(points: Tensor, centers: Tensor) -> Tensor:
    """(B, 3, N) x (B, K, 3) -> (B, N, K) squared Euclidean distances, exact (no matmul).

    One channel at a time, in place: the same sums as broadcasting all channels at once, at
    half the memory traffic.
    """
    distances = None
    for channel in range(points.shape[1]):
        diff = points[:, channel].unsqueeze(2) - centers[:, :, channel].unsqueeze(1)
        diff.square_()
        distances = diff if distances is None else distances.add_(diff)
    return distances


def _assign(points: Tensor, centers: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N) index of each point's nearest active center (the first one on ties), and the
    (B, N) squared distance to it.

    A running minimum over the K centers, each a few contiguous (B, N) operations: the same
    distances and choices as an ``argmin`` over a (B, N, K) tensor, without its strided
    reduction. Inactive centers are masked on the device (no test of whether any is).
    """
    best_distance = best = None
    for j in range(centers.shape[1]):
        distance = None
        for channel in range(points.shape[1]):
            diff = points[:, channel] - centers[:, j, channel].unsqueeze(1)
            diff.square_()
            distance = diff if distance is None else distance.add_(diff)
        if j > 0:  # center 0 is always active (k >= 1)
            distance.masked_fill_(~active[:, j].unsqueeze(1), math.inf)
        if best is None:
            best_distance, best = distance, torch.zeros_like(distance, dtype=torch.long)
            continue
        closer = distance < best_distance
        best_distance = torch.minimum(distance, best_distance)
        best.masked_fill_(closer, j)
    return best, best_distance


def _means(points: Tensor, labels: Tensor, centers: Tensor) -> Tensor:
    """(B, K, 3) mean of each cluster's points (B, 3, N); an empty cluster keeps its center.

    Sums are deterministic (no atomics): an ``index_add`` in the input's precision on the CPU
    (in order, so independent of K), a float64 one-hot matrix product elsewhere.
    """
    batch, n = labels.shape
    k = centers.shape[1]
    if points.device.type == "cpu":
        exact = torch.float64 if points.dtype == torch.float64 else torch.float32
        # CPU: an index_add over all pixels is exact in order (no atomics) and cheaper than
        # building the one-hot matrix
        flat = (labels + torch.arange(batch, device=labels.device).unsqueeze(1) * k).flatten()
        values = points.to(exact).transpose(1, 2).reshape(-1, points.shape[1])
        sums = torch.zeros(batch * k, points.shape[1], dtype=exact).index_add_(0, flat, values)
        sums = sums.view(batch, k, -1)
        sizes = torch.bincount(flat, minlength=batch * k).view(batch, k, 1).to(exact)
    else:
        # float64: GEMM kernels (and so summation orders) vary with K; float64 keeps a sample's
        # means identical whatever K_max its batch runs with
        exact = torch.float32 if points.device.type == "mps" else torch.float64
        one_hot = torch.zeros(batch, n, k, dtype=exact, device=labels.device)
        one_hot.scatter_(2, labels.unsqueeze(2), 1.0)  # (B, N, K)
        sums = torch.bmm(points.to(exact), one_hot).transpose(1, 2)  # (B, K, 3)
        sizes = one_hot.sum(1).unsqueeze(2)  # (B, K, 1)
    means = (sums / sizes.clamp(min=1)).to(centers.dtype)
    return torch.where(sizes > 0, means, centers)


def _paint(labels: Tensor, colors: Tensor) -> Tensor:
    """(B, H, W) labels and (B, K, 3) colors -> (B, 3, H, W) image."""
    batch, height, width = labels.shape
    flat = labels.reshape(batch, height * width, 1).expand(-1, -1, 3)
    return colors.gather(1, flat).transpose(1, 2).reshape(batch, 3, height, width)
