import hashlib
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from pirec_lightning.models.losses import (
    AdversarialLoss,
    PerceptualLoss,
    ReconstructionLoss,
    StyleLoss,
    VGG19Features,
    build_vgg,
    gram_matrix,
    l1_loss,
)

LOGITS = torch.tensor([[0.5, -2.0]])


def _save_hashed(state: dict[str, torch.Tensor], folder: Path) -> Path:
    """Save ``state`` as ``vgg19-<sha256[:8]>.pth`` in ``folder``, torchvision's naming."""
    tmp = folder / "vgg19.tmp"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    return tmp.rename(folder / f"vgg19-{digest}.pth")


@pytest.fixture(scope="module")
def fake_vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight VGG19 ``features.*`` checkpoint in float16 (~40 MB instead of 548 MB)."""
    torch.manual_seed(0)
    features = make_layers(cfgs["E"])
    state = {f"features.{k}": v.half() for k, v in features.state_dict().items()}
    return _save_hashed(state, tmp_path_factory.mktemp("vgg"))


@pytest.fixture(scope="module")
def vgg(fake_vgg_file: Path) -> VGG19Features:
    return VGG19Features(fake_vgg_file)


# adversarial ---------------------------------------------------------------------------------


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.mark.parametrize(
    ("gan_type", "is_real", "for_discriminator", "expected"),
    [
        ("lsgan", True, True, ((0.5 - 1) ** 2 + (-2 - 1) ** 2) / 2),
        ("lsgan", False, True, (0.5**2 + 2.0**2) / 2),
        ("lsgan", True, False, ((0.5 - 1) ** 2 + (-2 - 1) ** 2) / 2),
        ("nsgan", True, True, (_softplus(-0.5) + _softplus(2.0)) / 2),
        ("nsgan", False, True, (_softplus(0.5) + _softplus(-2.0)) / 2),
        ("nsgan", True, False, (_softplus(-0.5) + _softplus(2.0)) / 2),
        ("hinge", True, True, (0.5 + 3.0) / 2),
        ("hinge", False, True, (1.5 + 0.0) / 2),
        ("hinge", True, False, -(0.5 - 2.0) / 2),
        ("hinge", False, False, -(0.5 - 2.0) / 2),
    ],
)
def test_adversarial_loss_hand_values(
    gan_type: str, is_real: bool, for_discriminator: bool, expected: float
) -> None:
    loss = AdversarialLoss(gan_type)(LOGITS, is_real=is_real, for_discriminator=for_discriminator)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_adversarial_loss_unknown_type() -> None:
    with pytest.raises(ValueError, match="lsgan, nsgan, hinge"):
        AdversarialLoss("wgan")


# reconstruction ------------------------------------------------------------------------------


def test_l1_hand_value() -> None:
    a = torch.tensor([[0.0, 1.0], [0.5, 0.25]])
    b = torch.tensor([[0.5, 0.0], [0.5, 1.0]])
    expected = (0.5 + 1.0 + 0.0 + 0.75) / 4
    assert l1_loss(a, b).item() == pytest.approx(expected)
    assert ReconstructionLoss()(a, b).item() == pytest.approx(expected)


def test_l1_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        l1_loss(torch.zeros(2, 3), torch.zeros(3, 2))


# gram / VGG ----------------------------------------------------------------------------------


def test_gram_matrix_hand_value() -> None:
    # one sample, C=2, H=1, W=2: rows f0=[1, 2], f1=[3, 4]
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[1 + 4, 3 + 8], [3 + 8, 9 + 16]]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(x), expected)


def test_vgg_features(vgg: VGG19Features) -> None:
    features = vgg(torch.rand(2, 3, 32, 32))
    channels_and_size = {k: tuple(v.shape[1:]) for k, v in features.items()}
    assert channels_and_size == {
        "relu1_1": (64, 32, 32),
        "relu2_1": (128, 16, 16),
        "relu2_2": (128, 16, 16),
        "relu3_1": (256, 8, 8),
        "relu3_4": (256, 8, 8),
        "relu4_1": (512, 4, 4),
        "relu4_4": (512, 4, 4),
        "relu5_1": (512, 2, 2),
        "relu5_2": (512, 2, 2),
    }
    assert all(v.min() >= 0 for v in features.values())
    assert len(vgg.layers) == 32  # nothing computed after relu5_2


def test_vgg_loads_the_file_weights(vgg: VGG19Features, fake_vgg_file: Path) -> None:
    state = torch.load(fake_vgg_file, weights_only=True)
    torch.testing.assert_close(vgg.layers[30].weight, state["features.30.weight"].float())


def test_vgg_rejects_incomplete_file(tmp_path: Path, fake_vgg_file: Path) -> None:
    state = torch.load(fake_vgg_file, weights_only=True)
    del state["features.34.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key.*34\.weight"):
        VGG19Features(_save_hashed(state, tmp_path))


def test_vgg_is_frozen_and_stays_in_eval(vgg: VGG19Features) -> None:
    parent = nn.ModuleDict({"vgg": vgg, "head": nn.Linear(1, 1)})
    parent.train()
    assert parent["head"].training
    assert not vgg.training and not any(m.training for m in vgg.modules())
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_is_not_saved_in_checkpoints(vgg: VGG19Features) -> None:
    parent = nn.ModuleDict({"perceptual": PerceptualLoss(vgg), "head": nn.Linear(1, 1)})
    state = parent.state_dict()
    assert set(state) == {"head.weight", "head.bias"}
    before = vgg.layers[0].weight.clone()
    parent.load_state_dict(state)  # strict: no missing VGG keys
    bigger = {**state, "perceptual.vgg.layers.0.weight": torch.zeros_like(before)}
    parent.load_state_dict(bigger)  # an old checkpoint with VGG entries: file weights win
    torch.testing.assert_close(vgg.layers[0].weight, before)


def test_perceptual_and_style_zero_for_identical_inputs(vgg: VGG19Features) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    perceptual, style = PerceptualLoss(vgg), StyleLoss(vgg)
    assert perceptual(x, x).item() == 0
    assert style(x, x).item() == 0
    assert perceptual(x, y).item() > 0
    assert style(x, y).item() > 0
    fx, fy = vgg(x), vgg(y)
    assert perceptual.from_features(fx, fy).item() == pytest.approx(perceptual(x, y).item())
    assert style.from_features(fx, fy).item() == pytest.approx(style(x, y).item())


def test_perceptual_loss_gradient_and_weights(vgg: VGG19Features) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = torch.rand(1, 3, 32, 32)
    PerceptualLoss(vgg)(x, y).backward()
    assert x.grad.abs().sum() > 0
    only_first = PerceptualLoss(vgg, weights=(2.0, 0, 0, 0, 0))(x, y)
    fx, fy = vgg(x), vgg(y)
    expected = 2 * (fx["relu1_1"] - fy["relu1_1"]).abs().mean()
    assert only_first.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="5 weights"):
        PerceptualLoss(vgg, weights=(1.0, 1.0))


def test_build_vgg_with_explicit_file(fake_vgg_file: Path) -> None:
    vgg, reason = build_vgg("imagenet", fake_vgg_file)
    assert isinstance(vgg, VGG19Features) and reason is None


def _constant_features(layers: tuple[str, ...], value: float, channels: int = 2) -> dict:
    return {name: torch.full((1, channels, 2, 3), value) for name in layers}


def test_perceptual_loss_hand_value(vgg: VGG19Features) -> None:
    """sum_i w_i * mean|x_i - y_i| over relu1_1 .. relu5_1, on constant feature maps."""
    from pirec_lightning.models.losses.perceptual import PERCEPTUAL_LAYERS

    loss = PerceptualLoss(vgg, weights=(1.0, 2.0, 0.0, 0.5, 1.0))
    x = _constant_features(PERCEPTUAL_LAYERS, 0.75)
    y = _constant_features(PERCEPTUAL_LAYERS, 0.25)
    # |0.75 - 0.25| = 0.5 everywhere: 0.5 * (1 + 2 + 0 + 0.5 + 1)
    assert loss.from_features(x, y).item() == pytest.approx(2.25)


def test_style_loss_hand_value(vgg: VGG19Features) -> None:
    """Gram of a constant map c with C channels and N = H * W positions: every entry is
    c^2 * N / (C * N) = c^2 / C; the loss sums mean|G_x - G_y| over the four style layers."""
    from pirec_lightning.models.losses.perceptual import STYLE_LAYERS

    loss = StyleLoss(vgg)
    x = _constant_features(STYLE_LAYERS, 2.0, channels=4)
    y = _constant_features(STYLE_LAYERS, 1.0, channels=4)
    per_layer = abs(2.0**2 / 4 - 1.0**2 / 4)
    assert loss.from_features(x, y).item() == pytest.approx(4 * per_layer)


def test_gram_matrix_is_float32_under_autocast() -> None:
    """Gram sums overflow float16: they are computed in float32 even under autocast."""
    x = torch.full((1, 2, 64, 64), 8.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(x)
    assert gram.dtype == torch.float32
    assert torch.allclose(gram, torch.full((1, 2, 2), 64.0 / 2))


# what the VGG sees (loss.vgg_input) ----------------------------------------------------------


def _first_conv_input(vgg: VGG19Features, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = vgg.layers[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    try:
        vgg(x)
    finally:
        handle.remove()
    return seen[0]


def test_vgg_raw_input_is_the_image_itself(fake_vgg_file: Path) -> None:
    """PI-REC / EdgeConnect feed [0, 1] images straight into VGG19: a mid-grey image reaches
    the first convolution as 0.5 everywhere, and relu1_1 is relu(conv1_1(image))."""
    vgg = VGG19Features(fake_vgg_file)  # raw is the default
    assert vgg.vgg_input == "raw"
    grey = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(_first_conv_input(vgg, grey), grey)
    conv = vgg.layers[0]
    expected = torch.relu(torch.nn.functional.conv2d(grey, conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(vgg(grey)["relu1_1"], expected)


def test_vgg_imagenet_input_is_normalized(fake_vgg_file: Path) -> None:
    vgg = VGG19Features(fake_vgg_file, vgg_input="imagenet")
    grey = torch.full((1, 3, 16, 16), 0.5)
    seen = _first_conv_input(vgg, grey)
    expected = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    torch.testing.assert_close(seen[0, :, 0, 0], torch.tensor(expected))
    # the scale the loss weights see: normalized inputs spread ~1 / 0.226 = 4.4x wider
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    ratio = (
        _first_conv_input(vgg, x).std() / _first_conv_input(VGG19Features(fake_vgg_file), x).std()
    )
    assert ratio.item() == pytest.approx(1 / 0.226, rel=0.03)


def test_vgg_input_unknown() -> None:
    with pytest.raises(ValueError, match="raw, imagenet"):
        VGG19Features(Path("unused.pth"), vgg_input="caffe")
