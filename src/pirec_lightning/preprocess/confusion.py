"""PI-REC's hyperparameter confusion and the preprocessor that turns images into model inputs.

PI-REC trains on plain images: per sample it draws the extraction hyperparameters (Canny sigma,
median kernels, number of colours K) so the model sees edge and colour domains of every style, drops
edge pixels, and cuts a free-form hole. :class:`Preprocessor` does all of it on the batch's device.
Ranges are given at ``reference_size`` (128 px, the paper's) and scaled to the working size.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from pirec_lightning.preprocess._checks import check_images, constant
from pirec_lightning.preprocess.color import color_domain
from pirec_lightning.preprocess.drawn import augment_drawn_edges, use_line_art
from pirec_lightning.preprocess.edges import canny_edges
from pirec_lightning.preprocess.kornia_ops import kornia_canny_edges, kornia_color_domain
from pirec_lightning.preprocess.masks import edge_dropout, free_form_masks

__all__ = [
    "OUTPUTS",
    "STAGES",
    "ConfusionConfig",
    "Preprocessor",
    "draw_maxima",
    "evaluation_confusion",
    "fork_seeds",
    "sample_confusion",
    "scale_kernel",
]

STAGES = ("fit", "validate", "test", "predict")
OUTPUTS = ("edge", "mask", "color_domain")
#: keys of a ``data.confusion`` node that set up the Preprocessor rather than the ranges
PREPROCESSOR_KEYS = ("enabled", "seed")
#: hyperparameters a caller may fix in :meth:`Preprocessor.forward` (``params``)
PARAMS = ("canny_sigma", "median_kernel", "k", "second_median_kernel")
#: ``engine``: this package's batched ops; ``kornia``: Kornia's (see ``kornia_ops``)
BACKENDS = ("engine", "kornia")


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise one clear ValueError."""
    if backend not in BACKENDS:
        raise ValueError(
            f"data.preprocess_backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    return backend


def _ops(backend: str) -> tuple:
    """(canny, color domain) functions of ``backend``."""
    if backend == "kornia":
        return kornia_canny_edges, kornia_color_domain
    return canny_edges, color_domain


@dataclass(frozen=True)
class ConfusionConfig:
    """Ranges of the per-sample draws, all at ``reference_size`` pixels.

    Attributes:
        canny_sigma: (lo, hi) Canny Gaussian sigma, drawn uniformly.
        median_kernel: (lo, hi) odd first median kernel, drawn uniformly among the odd values.
        k: (lo, hi) number of colours of the K-means quantisation, drawn uniformly (inclusive).
        second_median_kernel: odd choices of the second median kernel, drawn uniformly.
        edge_dropout: probability of dropping each edge pixel in training.
        mask_coverage: (lo, hi) hole fraction of the free-form masks.
        reference_size: image side at which the sizes above are given (PI-REC: 128).
        val_canny_sigma: fixed sigma for validation/test/predict (and training without confusion):
            4.0, the middle of 2.5-5.4.
        val_median_kernel: fixed first median kernel, 25, the middle of 15-35.
        val_k: fixed K, 4 (the middle 3.5 of 2-5 rounded up: colour domains keep more detail).
        val_second_median_kernel: fixed second median kernel, 3, the middle choice.
        drawn_edges: probability that a training sample's edge map is restyled as drawn lines
            (:func:`~pirec_lightning.preprocess.drawn.augment_drawn_edges`); 0 turns it off.
        edge_dilation: (lo, hi) stroke radius of a restyled sample in pixels at the WORKING size
            (not scaled: a 1-pixel line becomes 2r + 1 pixels wide).
        edge_thinning: probability that a restyled sample is thinned back to 1-pixel lines.
        dark_contours: probability that a restyled sample gets the image's dark-contour lines.
        drawn_outlines: probability that a restyled sample's Canny edges are replaced by the
            picture's outlines as a person traces them (one line per outline; see
            :func:`~pirec_lightning.preprocess.drawn.augment_drawn_edges`).
        dark_threshold: grey level below which a pixel counts as dark (ink).
        line_art: probability that a training sample with line art (``data=avatars``) gets
            it as its edge map instead of its Canny edges
            (:func:`~pirec_lightning.preprocess.drawn.use_line_art`); 0 turns it off.
        line_art_dilation: (lo, hi) stroke radius added to such a sample's line art, in pixels
            at the WORKING size.
        line_art_thinning: probability that such a sample's line art is thinned to 1 pixel.

    >>> ConfusionConfig().median_kernel
    (15, 35)
    """

    canny_sigma: tuple[float, float] = (2.5, 5.4)
    median_kernel: tuple[int, int] = (15, 35)
    k: tuple[int, int] = (2, 5)
    second_median_kernel: tuple[int, ...] = (1, 3, 5)
    edge_dropout: float = 0.08
    mask_coverage: tuple[float, float] = (0.1, 0.5)
    reference_size: int = 128
    val_canny_sigma: float = 4.0
    val_median_kernel: int = 25
    val_k: int = 4
    val_second_median_kernel: int = 3
    drawn_edges: float = 0.0
    edge_dilation: tuple[int, int] = (0, 2)
    edge_thinning: float = 0.5
    dark_contours: float = 0.5
    dark_threshold: float = 0.25
    drawn_outlines: float = 0.5
    line_art: float = 0.0
    line_art_dilation: tuple[int, int] = (0, 1)
    line_art_thinning: float = 0.3

    def __post_init__(self) -> None:
        # Hydra hands lists (ListConfig); store tuples so the config stays hashable and comparable.
        for name in (
            "canny_sigma",
            "median_kernel",
            "k",
            "second_median_kernel",
            "mask_coverage",
            "edge_dilation",
            "line_art_dilation",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        pairs = ("canny_sigma", "median_kernel", "k", "mask_coverage", "edge_dilation")
        for name in (*pairs, "line_art_dilation"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{name} must be a (lo, hi) pair with lo <= hi, got {value}")
        if self.canny_sigma[0] <= 0 or self.val_canny_sigma <= 0:
            raise ValueError(
                f"canny sigmas must be > 0, got {self.canny_sigma}, {self.val_canny_sigma}"
            )
        kernels = (*self.median_kernel, *self.second_median_kernel)
        kernels += (self.val_median_kernel, self.val_second_median_kernel)
        if not self.second_median_kernel or any(int(v) < 1 or int(v) % 2 == 0 for v in kernels):
            raise ValueError(f"median kernels must be odd and >= 1, got {kernels}")
        if self.k[0] < 1 or self.val_k < 1:
            raise ValueError(f"k must be >= 1, got {self.k} and val_k={self.val_k}")
        if not 0.0 <= self.edge_dropout <= 1.0:
            raise ValueError(f"edge_dropout must be in [0, 1], got {self.edge_dropout}")
        if not 0.0 <= self.mask_coverage[0] <= self.mask_coverage[1] <= 1.0:
            raise ValueError(
                f"mask_coverage must satisfy 0 <= lo <= hi <= 1, got {self.mask_coverage}"
            )
        for name in (
            "drawn_edges",
            "edge_thinning",
            "dark_contours",
            "dark_threshold",
            "drawn_outlines",
            "line_art",
            "line_art_thinning",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("edge_dilation", "line_art_dilation"):
            value = getattr(self, name)
            if value[0] < 0 or any(int(v) != v for v in value):
                raise ValueError(f"{name} must be integers >= 0, got {value}")
        if self.reference_size < 1:
            raise ValueError(f"reference_size must be >= 1, got {self.reference_size}")

    @classmethod
    def from_any(cls, confusion: ConfusionConfig | Mapping | None) -> ConfusionConfig:
        """Build from a config, a mapping of field overrides (e.g. a Hydra node) or None (defaults)."""
        if confusion is None:
            return cls()
        if isinstance(confusion, cls):
            return confusion
        if isinstance(confusion, Mapping):
            # `enabled` and `seed` live in the same config node (data.confusion) but configure the
            # Preprocessor, not the ranges: a saved data.confusion is accepted as it is
            confusion = {k: v for k, v in confusion.items() if k not in PREPROCESSOR_KEYS}
            unknown = set(confusion) - {f.name for f in fields(cls)}
            if unknown:
                valid = ", ".join([*(f.name for f in fields(cls)), *PREPROCESSOR_KEYS])
                raise ValueError(f"unknown confusion fields {sorted(unknown)}; valid: {valid}")
            return cls(**confusion)
        raise TypeError(
            f"confusion must be a ConfusionConfig, a mapping or None, got {type(confusion).__name__}"
        )


def scale_kernel(kernel: Tensor | int, scale: float) -> Tensor:
    """Scale a kernel size and round it to the nearest odd integer >= 1.

    >>> scale_kernel(torch.tensor([1, 3, 5, 15, 35]), 0.5)
    tensor([ 1,  1,  3,  7, 17])
    """
    scaled = torch.as_tensor(kernel, dtype=torch.float64) * scale
    return (2 * torch.floor(scaled / 2) + 1).clamp_min(1).to(torch.int64)


def _scale(config: ConfusionConfig, image_size: int) -> float:
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return image_size / config.reference_size


def sample_confusion(
    batch_size: int,
    config: ConfusionConfig,
    image_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    r"""Draw per-sample extraction hyperparameters, scaled from the reference size to ``image_size``.

    Args:
        batch_size: B.
        config: ranges at ``config.reference_size``.
        image_size: working image side; kernels and sigma scale by ``image_size / reference_size``.
        generator: random source on ``device``.
        device: where the draws live (default: the generator's device, else CPU).

    Returns:
        dict of (B,) tensors: ``canny_sigma`` (float32), ``median_kernel``, ``k``,
        ``second_median_kernel`` (int64; kernels odd >= 1).

    >>> draws = sample_confusion(4, ConfusionConfig(), 64, generator=torch.Generator().manual_seed(0))
    >>> bool((draws["median_kernel"] % 2 == 1).all()), sorted(draws)
    (True, ['canny_sigma', 'k', 'median_kernel', 'second_median_kernel'])
    """
    scale = _scale(config, image_size)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    shape = (batch_size,)
    lo, hi = config.canny_sigma
    sigma = lo + (hi - lo) * torch.rand(shape, generator=generator, device=device)
    first = torch.arange(config.median_kernel[0], config.median_kernel[1] + 1, 2, device=device)
    second = constant(tuple(config.second_median_kernel), torch.int64, torch.device(device))
    pick_first = torch.randint(len(first), shape, generator=generator, device=device)
    k = torch.randint(config.k[0], config.k[1] + 1, shape, generator=generator, device=device)
    pick_second = torch.randint(len(second), shape, generator=generator, device=device)
    return {
        "canny_sigma": sigma * scale,
        "median_kernel": scale_kernel(first[pick_first], scale).to(device),
        "k": k,
        "second_median_kernel": scale_kernel(second[pick_second], scale).to(device),
    }


def evaluation_confusion(
    batch_size: int,
    config: ConfusionConfig,
    image_size: int,
    *,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """The fixed ``val_*`` hyperparameters, scaled to ``image_size``, as (B,) tensors.

    >>> evaluation_confusion(2, ConfusionConfig(), 256)["median_kernel"]
    tensor([51, 51])
    """
    scale = _scale(config, image_size)

    def full(value, dtype=torch.int64) -> Tensor:
        return torch.full((batch_size,), value, dtype=dtype, device=device)

    return {
        "canny_sigma": full(config.val_canny_sigma * scale, torch.float32),
        "median_kernel": full(_scaled_odd(config.val_median_kernel, scale)),
        "k": full(config.val_k),
        "second_median_kernel": full(_scaled_odd(config.val_second_median_kernel, scale)),
    }


def _scaled_odd(kernel: int, scale: float) -> int:
    """:func:`scale_kernel` of one int, in Python floats (float64 both): nothing on a device."""
    return max(1, 2 * math.floor(kernel * scale / 2) + 1)


def draw_maxima(config: ConfusionConfig, image_size: int, drawn: bool) -> dict[str, int]:
    """The largest ``median_kernel``, ``k`` and ``second_median_kernel`` that
    :func:`sample_confusion` (``drawn``) or :func:`evaluation_confusion` can give.

    >>> draw_maxima(ConfusionConfig(), 64, drawn=True)
    {'median_kernel': 17, 'k': 5, 'second_median_kernel': 3}
    """
    scale = _scale(config, image_size)
    if drawn:
        kernels = [config.median_kernel[1], max(config.second_median_kernel)]
        k = config.k[1]
    else:
        kernels = [config.val_median_kernel, config.val_second_median_kernel]
        k = config.val_k
    first, second = (_scaled_odd(v, scale) for v in kernels)
    return {"median_kernel": first, "k": k, "second_median_kernel": second}


def fork_seeds(generator: torch.Generator, count: int) -> list[int]:
    """``count`` seeds in [0, 2**62) derived from ``generator``'s state, which then moves on.

    The state of a CPU generator, and a CUDA generator's Philox seed and offset, live in host
    memory: hashing them waits for nothing on the device (drawing the seeds there and reading
    them back would). The generator then advances by one draw on its own device, unread, so the
    next call gets other seeds; the same state always gives the same seeds.

    >>> a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    >>> fork_seeds(a, 2) == fork_seeds(b, 2) != fork_seeds(a, 2)
    True
    """
    state = generator.get_state().numpy().tobytes()
    digest = hashlib.blake2b(state, digest_size=8 * count).digest()
    seeds = [int.from_bytes(digest[8 * i : 8 * i + 8], "little") >> 2 for i in range(count)]
    torch.randint(2**62, (count,), generator=generator, device=generator.device)
    return seeds


def _fixed_params(
    fixed: Mapping[str, float | int | Tensor | None], like: dict[str, Tensor]
) -> dict[str, Tensor]:
    unknown = sorted(set(fixed) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown params {unknown}; valid: {', '.join(PARAMS)}")
    return {
        name: torch.as_tensor(value, dtype=like[name].dtype, device=like[name].device).expand_as(
            like[name]
        )
        for name, value in fixed.items()
        if value is not None
    }


class Preprocessor(nn.Module):
    r"""Images -> PI-REC inputs: edge domain, free-form hole mask and colour domain, per sample.

    Stage ``"fit"`` draws the hyperparameters per sample (:func:`sample_confusion`; the fixed
    ``val_*`` values when ``enabled=False``) and drops edge pixels with probability
    ``confusion.edge_dropout``. Stages ``"validate"``, ``"test"`` and ``"predict"`` use the fixed
    values and no dropout; their masks (and K-means draws) still come from ``generator``, so passing
    a generator re-seeded per batch gives identical inputs every epoch. Each output draws from its
    own generator forked from ``generator``, so an output does not depend on which others were asked.

    Args:
        image_size: side (min(H, W)) of the images; confusion ranges scale by
            ``image_size / confusion.reference_size``. ``None``: any size, the ranges scale to
            each batch's own min(H, W).
        confusion: a :class:`ConfusionConfig`, a mapping of its fields (a saved
            ``data.confusion`` node with ``enabled`` and ``seed`` included), or None for defaults.
        enabled: draw hyperparameters per sample in training (False: fixed evaluation values);
            None: the mapping's ``enabled``, else True.
        seed: seed of the internal generator used when ``forward`` gets none (one per device);
            None: the mapping's ``seed``, else 0.
        backend: ``engine`` (default) or ``kornia`` (Canny, median and K-means from Kornia;
            see :mod:`pirec_lightning.preprocess.kornia_ops`).

    Shape:
        - images: (B, 3, H, W) in [0, 1]
        - output: dict with ``"image"`` (the input) and the requested of ``"edge"`` (B, 1, H, W) in
          {0, 1}, ``"mask"`` (B, 1, H, W) in {0, 1} (1 = hole), ``"color_domain"`` (B, 3, H, W) in [0, 1]

    >>> pre = Preprocessor(32)
    >>> out = pre(torch.rand(2, 3, 32, 32), outputs=("edge", "mask"))
    >>> sorted(out), out["edge"].shape
    (['edge', 'image', 'mask'], torch.Size([2, 1, 32, 32]))
    """

    def __init__(
        self,
        image_size: int | None,
        confusion: ConfusionConfig | Mapping | None = None,
        enabled: bool | None = None,
        seed: int | None = None,
        backend: str = "engine",
    ) -> None:
        super().__init__()
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.backend = check_backend(backend)
        self.image_size = int(image_size) if image_size is not None else None
        saved = confusion if isinstance(confusion, Mapping) else {}
        if enabled is None:
            enabled = saved.get("enabled")
        if seed is None:
            seed = saved.get("seed")
        self.confusion = ConfusionConfig.from_any(confusion)
        self.enabled = True if enabled is None else bool(enabled)
        self.seed = 0 if seed is None else int(seed)
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device | str) -> torch.Generator:
        """The internal generator for ``device``, created and seeded with ``seed`` on first use."""
        key = str(torch.device(device))
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def forward(
        self,
        images: Tensor,
        stage: str = "fit",
        outputs: Sequence[str] = OUTPUTS,
        generator: torch.Generator | None = None,
        params: Mapping[str, float | int | Tensor | None] | None = None,
        line_art: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Make the requested ``outputs`` of ``images`` for ``stage``.

        ``line_art`` (B, 1, H, W): the items' own line art, 1 = ink, or all -1 for an item
        without (``data=avatars``); in training a fraction ``confusion.line_art`` of the items
        that have it take it as their edge map.

        ``params`` fixes any of ``canny_sigma``, ``median_kernel``, ``k``,
        ``second_median_kernel`` (a number or a (B,) tensor, in pixels of these images, not
        scaled); None values and the rest come from the stage's draws or evaluation values.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
        if isinstance(outputs, str):
            outputs = (outputs,)
        unknown = [name for name in outputs if name not in OUTPUTS]
        if unknown:
            raise ValueError(f"unknown outputs {unknown}; valid outputs: {', '.join(OUTPUTS)}")
        check_images(images, channels=3)
        batch, _, height, width = images.shape
        size = self.image_size if self.image_size is not None else min(height, width)
        if min(height, width) != size:
            raise ValueError(
                f"images are {height}x{width} but this Preprocessor was built for image_size="
                f"{self.image_size} (min(H, W)); build it with image_size=None to scale the ranges "
                "to any image"
            )
        device = images.device
        generator = generator if generator is not None else self.generator(device)
        # Fork one generator per output (fixed order) so each output is the same whichever others
        # were requested; the seeds come from ``generator``'s state, which then moves on by one
        # draw (the only random call on it).
        seeds = fork_seeds(generator, len(OUTPUTS) + 1)
        forks = {
            name: torch.Generator(device=device).manual_seed(s)
            for name, s in zip(("params", *OUTPUTS), seeds)
        }

        config = self.confusion
        training = stage == "fit"
        if training and self.enabled:
            drawn = sample_confusion(batch, config, size, generator=forks["params"], device=device)
        else:
            drawn = evaluation_confusion(batch, config, size, device=device)
        fixed = _fixed_params(params or {}, drawn)
        params = {**drawn, **fixed}
        # the drawn values lie in known ranges: nothing is read back to check them or to size
        # the work (fixed values are checked)
        trusted = {}
        if self.backend == "engine" and not fixed:
            trusted["maxima"] = draw_maxima(config, size, training and self.enabled)

        canny, make_color_domain = _ops(self.backend)
        result = {"image": images}
        if "edge" in outputs:
            edge = canny(images, params["canny_sigma"].to(images.dtype))
            if training:
                edge = edge_dropout(edge, config.edge_dropout, generator=forks["edge"])
                if config.drawn_edges > 0:  # lines as people draw them (preprocess/drawn.py)
                    edge = augment_drawn_edges(
                        edge,
                        images,
                        probability=config.drawn_edges,
                        dilation=config.edge_dilation,
                        thinning=config.edge_thinning,
                        contours=config.dark_contours,
                        threshold=config.dark_threshold,
                        outlines=config.drawn_outlines,
                        generator=forks["edge"],
                    )
                if config.line_art > 0 and line_art is not None:  # the artists' own lines
                    art = edge_dropout(
                        (line_art > 0.5).to(edge.dtype),
                        config.edge_dropout,
                        generator=forks["edge"],
                    )
                    edge = use_line_art(
                        edge,
                        art,
                        line_art.amax(dim=(1, 2, 3)) >= 0,
                        probability=config.line_art,
                        dilation=config.line_art_dilation,
                        thinning=config.line_art_thinning,
                        generator=forks["edge"],
                    )
            result["edge"] = edge
        if "mask" in outputs:
            masks = free_form_masks(
                batch,
                height,
                width,
                coverage=config.mask_coverage,
                generator=forks["mask"],
                device=device,
            )
            result["mask"] = masks.to(images.dtype)
        if "color_domain" in outputs:
            result["color_domain"] = make_color_domain(
                images,
                params["median_kernel"],
                params["k"],
                params["second_median_kernel"],
                generator=forks["color_domain"],
                **trusted,
            )
        return result

    @torch.no_grad()
    def figure(self, images: Tensor, draws: int = 3, seed: int | None = None) -> Tensor:
        r"""A grid showing what training sees: per row an image, then edge | colour domain per draw.

        Args:
            images: (N, 3, H, W) in [0, 1]; a few images (one row each).
            draws: number of confusion draws (column pairs) per image.
            seed: seed of the draws (default: ``self.seed``).

        Returns:
            (3, H', W') in [0, 1], ready for ``torchvision.utils.save_image``.

        >>> Preprocessor(32).figure(torch.rand(2, 3, 32, 32), draws=2).shape
        torch.Size([3, 70, 172])
        """
        from torchvision.utils import make_grid

        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        generator = torch.Generator(device=images.device).manual_seed(
            self.seed if seed is None else seed
        )
        columns = [images]
        for _ in range(draws):
            out = self(images, "fit", ("edge", "color_domain"), generator=generator)
            columns += [out["edge"].expand_as(images), out["color_domain"]]
        tiles = torch.stack(columns, 1).flatten(0, 1)  # row-major: image, edge, colour, edge, ...
        return make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, enabled={self.enabled}, seed={self.seed}, backend={self.backend!r}, confusion={asdict(self.confusion)}"
