"""Perceptual metrics from ImageNet backbones converted on the user's machine: LPIPS (AlexNet and
VGG16) and DISTS (VGG16); and FID (Inception, torch-fidelity).

The backbones are the files ``pirec weights fetch`` writes (:mod:`pirec_lightning.models.backbones`);
the small learned heads are the ones torchmetrics ships inside its package (LPIPS v0.1 linear
layers ``lpips_models/{alex,vgg}.pth``, DISTS ``dists_models/weights.pt`` alpha and beta), read
with ``weights_only``. Used by validation (:mod:`pirec_lightning.phases.validation`),
``pirec evaluate`` and ``benchmarks/quality.py`` alike; where a backbone is absent the metric is
skipped with one line naming ``pirec weights fetch``.

>>> lpips_distance(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape  # doctest: +SKIP
torch.Size([2])
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pirec_lightning.checkpoints import read_checkpoint
from pirec_lightning.errors import CheckpointError
from pirec_lightning.models.backbones import (
    FETCH_HINT,
    backbone_path,
    features_layers,
    load_features,
)
from pirec_lightning.models.losses.weights import VGGWeightsUnavailable, resolve_vgg19_weights

__all__ = [
    "ALEXNET",
    "INCEPTION",
    "OPTIONAL_METRICS",
    "PerceptualDistance",
    "dists_distance",
    "lpips_distance",
    "optional_metrics",
]

#: torchvision's own AlexNet file, still accepted for LPIPS (``--lpips-weights``, or found in the
#: weights folders) where the converted one is absent
ALEXNET = (
    "alexnet-owt-7be5be79.pth",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)
INCEPTION = (
    "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
)
#: the metrics beside PSNR/SSIM, in report order
OPTIONAL_METRICS = ("lpips", "lpips_vgg", "dists", "fid")
#: ReLU outputs LPIPS reads, as indices of torchvision's ``features``
_LPIPS_TAPS = {"alexnet": (1, 4, 7, 9, 11), "vgg16": (3, 8, 15, 22, 29)}
_NETS = {"alex": "alexnet", "vgg": "vgg16"}


def _torchmetrics_file(*parts: str) -> Path:
    import torchmetrics

    return Path(torchmetrics.__file__).parent.joinpath("functional", "image", *parts)


class _LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018): unit-normalised ReLU activations, squared differences
    weighted per channel by the linear heads, averaged over space, summed over layers."""

    def __init__(self, backbone: str, features: nn.Sequential) -> None:
        super().__init__()
        taps = _LPIPS_TAPS[backbone]
        self.features = features[: taps[-1] + 1]
        self.taps = taps
        head = "alex.pth" if backbone == "alexnet" else "vgg.pth"
        state = torch.load(
            _torchmetrics_file("lpips_models", head), map_location="cpu", weights_only=True
        )
        self.heads = nn.ParameterList(
            [nn.Parameter(state[f"lin{k}.model.1.weight"], requires_grad=False) for k in range(5)]
        )
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def activations(self, x: Tensor) -> list[Tensor]:
        x = ((2 * x - 1) - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(a.shape[0])
        for head, fa, fb in zip(self.heads, self.activations(a), self.activations(b)):
            total = total + F.conv2d((fa - fb) ** 2, head).mean((1, 2, 3))
        return total


class _DISTS(nn.Module):
    """DISTS (Ding et al. 2020), as torchmetrics' ``DISTSNetwork``: VGG16 with L2 pooling in place
    of max pooling, structure and texture terms per channel weighted by the learned alpha/beta."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        from torchmetrics.functional.image.dists import L2pooling

        # stages end at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; each later one starts with
        # L2 pooling where VGG has its max pool
        bounds = [(0, 4), (5, 9), (10, 16), (17, 23), (24, 30)]
        channels = [64, 128, 256, 512]
        stages = []
        for n, (start, end) in enumerate(bounds):
            layers = [] if n == 0 else [L2pooling(channels=channels[n - 1])]
            stages.append(nn.Sequential(*layers, *features[start:end]))
        self.stages = nn.ModuleList(stages)
        weights = torch.load(
            _torchmetrics_file("dists_models", "weights.pt"), map_location="cpu", weights_only=True
        )
        self.register_buffer("alpha", weights["alpha"].float())
        self.register_buffer("beta", weights["beta"].float())
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.chns = [3, 64, 128, 256, 512, 512]

    def activations(self, x: Tensor) -> list[Tensor]:
        out = [x]
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        c1 = c2 = 1e-6
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, self.chns, dim=1)
        betas = torch.split(self.beta / total, self.chns, dim=1)
        structure = a.new_zeros(a.shape[0])
        texture = a.new_zeros(a.shape[0])
        for alpha, beta, fa, fb in zip(alphas, betas, self.activations(a), self.activations(b)):
            ma, mb = fa.mean((2, 3), keepdim=True), fb.mean((2, 3), keepdim=True)
            s1 = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
            va = ((fa - ma) ** 2).mean((2, 3), keepdim=True)
            vb = ((fb - mb) ** 2).mean((2, 3), keepdim=True)
            cov = (fa * fb).mean((2, 3), keepdim=True) - ma * mb
            s2 = (2 * cov + c2) / (va + vb + c2)
            structure = structure + (alpha * s1).sum((1, 2, 3))
            texture = texture + (beta * s2).sum((1, 2, 3))
        return 1 - (structure + texture)


@lru_cache(maxsize=8)
def _network(kind: str, device: str, path: str | None = None) -> nn.Module:
    """One frozen network per kind, device and weights file, shared by every metric object."""
    if kind == "dists":
        net: nn.Module = _DISTS(load_features("vgg16"))
    else:
        backbone = _NETS[kind]
        features = _explicit_alexnet(Path(path)) if path else load_features(backbone)
        net = _LPIPS(backbone, features)
    return net.requires_grad_(False).eval().to(device)


def _explicit_alexnet(path: Path) -> nn.Sequential:
    """AlexNet ``features`` from a torchvision ``alexnet`` state dict file or a converted one."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = read_checkpoint(path, "AlexNet weights")
    features = features_layers("alexnet")
    features.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    )
    for layer in features:
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    return features


def _check_images(a: Tensor, b: Tensor) -> None:
    if a.ndim != 4 or a.shape[1] != 3 or a.shape != b.shape:
        raise ValueError(
            f"perceptual distances take two (B, 3, H, W) images of one shape in [0, 1], "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def lpips_distance(a: Tensor, b: Tensor, net: str = "alex") -> Tensor:
    """LPIPS v0.1 between ``a`` and ``b``: (B, 3, H, W) in [0, 1] -> (B,) (0 for identical images;
    lower is better).

    Args:
        net: ``alex`` (AlexNet, the LPIPS authors' default) or ``vgg`` (VGG16).

    Raises:
        VGGWeightsUnavailable: the backbone was never converted (one line naming
            ``pirec weights fetch``).
    """
    if net not in _NETS:
        raise ValueError(f"net must be one of {', '.join(_NETS)}, got {net!r}")
    _check_images(a, b)
    with torch.no_grad():
        return _network(net, str(a.device))(a.float(), b.float())


def dists_distance(a: Tensor, b: Tensor) -> Tensor:
    """DISTS between ``a`` and ``b``: (B, 3, H, W) in [0, 1] -> (B,) (0 for identical images;
    lower is better).

    Raises:
        VGGWeightsUnavailable: VGG16 was never converted (one line naming ``pirec weights fetch``).
    """
    _check_images(a, b)
    with torch.no_grad():
        return _network("dists", str(a.device))(a.float(), b.float())


class PerceptualDistance:
    """A mean of :func:`lpips_distance` / :func:`dists_distance` over batches, with the interface
    validation and ``pirec evaluate`` use for torchmetrics' metrics (``update``, ``compute``,
    ``reset``, ``clone``, ``to``, ``update_called``). The network is shared, never copied.

    Args:
        kind: ``alex`` | ``vgg`` (LPIPS) or ``dists``.
        path: an explicit AlexNet weights file (LPIPS ``alex`` only).
    """

    def __init__(self, kind: str, path: str | Path | None = None) -> None:
        if kind not in (*_NETS, "dists"):
            raise ValueError(f"unknown perceptual metric {kind!r}")
        self.kind, self.path = kind, None if path is None else str(path)
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    @property
    def update_called(self) -> bool:
        return self.count > 0

    def to(self, device: Any) -> PerceptualDistance:
        return self  # the network follows each batch's device

    def requires_grad_(self, requires_grad: bool = True) -> PerceptualDistance:
        return self  # the network is always frozen

    def clone(self) -> PerceptualDistance:
        return PerceptualDistance(self.kind, self.path)

    def update(self, image: Tensor, target: Tensor) -> None:
        _check_images(image, target)
        with torch.no_grad():
            net = _network(self.kind, str(image.device), self.path)
            values = net(image.float().clamp(0, 1), target.float())
        self.total += float(values.sum())
        self.count += values.numel()

    def compute(self) -> Tensor:
        if not self.count:
            raise RuntimeError("no batch was measured")
        return torch.tensor(self.total / self.count)


def _weights(
    explicit: str | Path | None, file: tuple[str, str], verify: bool, download: bool = True
) -> tuple[Path | None, str]:
    try:
        path = resolve_vgg19_weights(
            explicit, filename=file[0], url=file[1], verify=verify, download=download
        )
        # the libraries may unpickle it fully: only a file that is plain weights goes to them
        read_checkpoint(path, "metric weights")
        return path, ""
    except VGGWeightsUnavailable:
        return None, "not found"
    except (FileNotFoundError, RuntimeError, CheckpointError) as error:
        return None, str(error)


def _lpips_alex(explicit: str | Path | None) -> tuple[Any | None, str]:
    """LPIPS-AlexNet from ``explicit``, else the converted AlexNet, else torchvision's own file
    where it is already on disk."""
    if explicit is None and backbone_path("alexnet") is not None:
        return (lambda: PerceptualDistance("alex")), ""
    path, reason = _weights(explicit, ALEXNET, verify=True, download=False)
    if path is None:
        return None, (
            f"LPIPS skipped: AlexNet weights {reason}; {FETCH_HINT} (or pass --lpips-weights "
            f"PATH of {ALEXNET[0]})"
        )
    return (lambda: PerceptualDistance("alex", path)), ""


def optional_metrics(
    lpips_weights: str | Path | None = None,
    fid_weights: str | Path | None = None,
    names: tuple[str, ...] = OPTIONAL_METRICS,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``({"lpips": factory, "lpips_vgg": ..., "dists": ..., "fid": ...}, {name: why skipped})``
    for the ``names`` asked; a factory makes a fresh metric (one per stage), with ``update(image,
    target)``, ``compute()`` and ``reset()``.

    ``lpips`` is AlexNet LPIPS, ``lpips_vgg`` VGG16 LPIPS, ``dists`` DISTS: from the backbones
    ``pirec weights fetch`` converts (``lpips`` also from an explicit torchvision AlexNet file).
    """
    unknown = set(names) - set(OPTIONAL_METRICS)
    if unknown:
        raise ValueError(
            f"unknown metric {sorted(unknown)[0]!r}; choose from {', '.join(OPTIONAL_METRICS)}"
        )
    factories: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if "lpips" in names:
        factory, reason = _lpips_alex(lpips_weights)
        if factory is None:
            skipped["lpips"] = reason
        else:
            factories["lpips"] = factory
    vgg16 = backbone_path("vgg16") is not None
    for name, kind, label in (("lpips_vgg", "vgg", "LPIPS (vgg)"), ("dists", "dists", "DISTS")):
        if name not in names:
            continue
        if vgg16:
            factories[name] = lambda kind=kind: PerceptualDistance(kind)
        else:
            skipped[name] = f"{label} skipped: no converted VGG16 weights; {FETCH_HINT}"
    if "fid" in names:
        _fid(fid_weights, factories, skipped)
    return factories, skipped


def _fid(fid_weights: str | Path | None, factories: dict, skipped: dict) -> None:
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        skipped["fid"] = "FID skipped: needs torch-fidelity: pip install 'pirec-lightning[metrics]'"
        return
    path, reason = _weights(fid_weights, INCEPTION, verify=False)
    if path is None:
        skipped["fid"] = (
            f"FID skipped: Inception weights {reason}; put {INCEPTION[0]} in $PIREC_WEIGHTS_DIR "
            f"or the torch hub cache, or pass --fid-weights PATH ({INCEPTION[1]})"
        )
        return

    def fid(path: Path = path) -> Any:
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(normalize=True, feature_extractor_weights_path=str(path))

    factories["fid"] = fid
