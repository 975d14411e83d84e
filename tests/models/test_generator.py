import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pirec_lightning.models.networks import Generator, ResnetBlock, init_weights

SHARED = Path(__file__).parents[3] / "shared"
ORIGINAL_PARAMETERS = 10_545_219


@pytest.mark.parametrize("size", [32, 64])
def test_output_shape_and_range(size: int) -> None:
    torch.manual_seed(0)
    generator = Generator(in_channels=4, base_channels=8, res_blocks=2)
    x = torch.rand(2, 4, size, size)
    y = generator(x)
    assert y.shape == (2, 3, size, size)
    assert y.min() >= 0 and y.max() <= 1
    assert y.std() > 0


def test_non_square_input() -> None:
    y = Generator(base_channels=8, res_blocks=1)(torch.rand(1, 4, 32, 48))
    assert y.shape == (1, 3, 32, 48)


def test_gradients_reach_the_first_layer() -> None:
    generator = Generator(base_channels=8, res_blocks=1)
    generator(torch.rand(1, 4, 32, 32)).mean().backward()
    assert generator.encoder[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 4, 30, 32), (1, 4, 32, 34)])
def test_size_not_divisible_by_4_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        Generator(base_channels=8, res_blocks=1)(torch.rand(shape))


def test_wrong_channel_count_raises() -> None:
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        Generator(base_channels=8, res_blocks=1)(torch.rand(1, 3, 32, 32))


def test_default_parameter_count_matches_original() -> None:
    generator = Generator()
    assert sum(p.numel() for p in generator.parameters()) == ORIGINAL_PARAMETERS


def test_state_dict_matches_original_keys() -> None:
    reference_file = SHARED / "reference" / "pirec_generator_keys.json"
    if not reference_file.is_file():
        pytest.skip(f"{reference_file} not available")
    reference = json.loads(reference_file.read_text())
    state = Generator().state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == reference
    # An original checkpoint loads strictly.
    Generator().load_state_dict({k: torch.zeros(shape) for k, shape in reference.items()})


def test_resnet_block_is_residual() -> None:
    block = ResnetBlock(8, dilation=2)
    for conv in (block.conv_block[1], block.conv_block[5]):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.rand(1, 8, 16, 16)
    torch.testing.assert_close(block(x), x)


def test_init_weights_normal() -> None:
    torch.manual_seed(0)
    generator = Generator(base_channels=8, res_blocks=1)
    conv = generator.middle[0].conv_block[1]
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(conv.bias == 0)
    init_weights(generator, "xavier", gain=1.0)
    assert conv.weight.std().item() > 0.05


def test_init_weights_unknown_type_raises() -> None:
    with pytest.raises(ValueError, match="normal, xavier, kaiming, orthogonal"):
        init_weights(nn.Conv2d(1, 1, 1), "uniform")
