import pytest
import torch
from torch import nn

from pirec_lightning.models.networks import Discriminator


def _convs(discriminator: Discriminator) -> list[nn.Conv2d]:
    return [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]


def test_logits_and_features_shapes() -> None:
    discriminator = Discriminator(in_channels=3, base_channels=8)
    logits, features = discriminator(torch.rand(2, 3, 64, 64))
    # 64 -> 32 -> 16 -> 8 (stride 2) -> 7 -> 6 (stride 1, kernel 4, padding 1)
    assert logits.shape == (2, 1, 6, 6)
    assert [tuple(f.shape) for f in features] == [
        (2, 8, 32, 32),
        (2, 16, 16, 16),
        (2, 32, 8, 8),
        (2, 64, 7, 7),
        (2, 1, 6, 6),
    ]
    assert features[-1] is logits


def test_logits_are_unbounded() -> None:
    torch.manual_seed(0)
    discriminator = Discriminator(base_channels=8, use_spectral_norm=False)
    with torch.no_grad():
        discriminator.conv5[0].bias.fill_(-3.0)
    logits, _ = discriminator(torch.rand(1, 3, 32, 32))
    assert logits.max() < 0


def test_spectral_norm_on_every_conv() -> None:
    discriminator = Discriminator(base_channels=8)
    convs = _convs(discriminator)
    assert len(convs) == 5
    for conv in convs:
        assert "weight_orig" in dict(conv.named_parameters())
        assert conv.bias is None
    assert "conv1.0.weight_orig" in discriminator.state_dict()


def test_without_spectral_norm_convs_have_bias() -> None:
    convs = _convs(Discriminator(base_channels=8, use_spectral_norm=False))
    assert len(convs) == 5
    for conv in convs:
        assert not hasattr(conv, "weight_orig")
        assert conv.bias is not None


@pytest.mark.parametrize("use_spectral_norm", [True, False])
def test_gradients_flow_to_input(use_spectral_norm: bool) -> None:
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    logits, _ = Discriminator(base_channels=8, use_spectral_norm=use_spectral_norm)(x)
    logits.mean().backward()
    assert x.grad.abs().sum() > 0
