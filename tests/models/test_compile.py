"""model.compile: torch.compile of G and D in place, spectral norm without graph breaks."""

from __future__ import annotations

import copy

import pytest
import torch

from pirec_lightning.models.networks import Discriminator, Generator
from pirec_lightning.models.networks.compile import compile_networks


@pytest.mark.parametrize(
    "network, shape",
    [
        (Discriminator(base_channels=8), (2, 3, 32, 32)),
        pytest.param(
            Generator(base_channels=8, res_blocks=1), (2, 4, 32, 32), marks=pytest.mark.slow
        ),
    ],
    ids=["discriminator", "generator"],
)
def test_networks_trace_as_one_graph(network, shape):
    """Spectral norm's power-iteration hook included: one graph, no break (no compile run)."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(network)(torch.rand(shape))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_compile_in_place_keeps_checkpoint_keys(make_cfg):
    from pirec_lightning.training import build_phase

    eager = build_phase(make_cfg("phase=imitation", "debug=tiny"))
    compiled = build_phase(make_cfg("phase=imitation", "debug=tiny", "model.compile=true"))
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert "conv1.0.weight_orig" in dict(compiled.discriminator.named_parameters())
    assert compiled.generator._compiled_call_impl is not None
    assert eager.generator._compiled_call_impl is None


def test_bad_compile_mode_stops_before_training(make_cfg):
    from pirec_lightning.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="model.compile_mode must be one of"):
        validate_config(make_cfg("model.compile=true", "model.compile_mode=fast"))
    assert not compile_networks([torch.nn.Linear(1, 1)], {"compile": False})


@pytest.mark.slow
def test_compiled_discriminator_equals_eager_and_updates_spectral_norm():
    """Inductor on the CPU (minutes on 2 cores): outputs, the power-iteration buffers and the
    gradients of a real and a fake pass taken before one backward (as the GAN step does)."""
    torch.manual_seed(0)
    eager = Discriminator(base_channels=8)
    compiled = copy.deepcopy(eager)
    compile_networks([compiled], {"compile": True})
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    for _ in range(2):
        for network in (eager, compiled):
            network.zero_grad()
            (network(real)[0].square().mean() + network(fake)[0].mean()).backward()
        assert torch.allclose(eager(real)[0], compiled(real)[0], atol=1e-5)
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
            assert torch.allclose(a.grad, b.grad, atol=1e-5), name
        for (name, a), b in zip(eager.named_buffers(), compiled.buffers()):
            assert torch.allclose(a, b, atol=1e-5), name
