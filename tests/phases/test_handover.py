"""Weights move between phases (and nothing else); refinement keeps its preliminary generator
frozen; the refinement checkpoint alone reconstructs."""

from __future__ import annotations

import pytest
import torch

from pirec_lightning.phases import (
    GeneratingPhase,
    HandOverError,
    ImitationPhase,
    RefinementPhase,
    init_from_checkpoint,
)

from .conftest import TINY_LOSS, TINY_MODEL, fit


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def imitation_ckpt(tmp_path):
    module = ImitationPhase(model=TINY_MODEL, loss=TINY_LOSS)
    trainer = fit(module, steps=2, root=tmp_path)
    path = tmp_path / "imitation.ckpt"
    trainer.save_checkpoint(path)
    return path, module


def test_hand_over_copies_generator_and_discriminator_only(imitation_ckpt):
    path, source = imitation_ckpt
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["optimizer_states"]  # there is optimizer state to (not) carry
    assert checkpoint["pirec_phase"] == "imitation"

    target = GeneratingPhase(model=TINY_MODEL, loss=TINY_LOSS)
    copied = init_from_checkpoint(target, path)
    assert copied == {
        "generator": len(source.generator.state_dict()),
        "discriminator": len(source.discriminator.state_dict()),
    }
    for name in ("generator", "discriminator"):
        ours, theirs = getattr(target, name).state_dict(), getattr(source, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # (that no optimizer state or step count comes along is checked through a real run in
    # tests/test_train.py::test_generating_from_imitation_then_resume_same_phase)


def test_refinement_gets_generating_weights_twice_and_keeps_preliminary_frozen(tmp_path, batch):
    generating = GeneratingPhase(model=TINY_MODEL, loss=TINY_LOSS)
    trainer = fit(generating, steps=1, root=tmp_path)
    path = tmp_path / "generating.ckpt"
    trainer.save_checkpoint(path)

    refinement = RefinementPhase(model=TINY_MODEL, loss=TINY_LOSS)
    init_from_checkpoint(refinement, path)
    expected = generating.generator.state_dict()
    for net in (refinement.generator, refinement.preliminary_generator):
        assert all(torch.equal(net.state_dict()[k], expected[k]) for k in expected)
    frozen = _state(refinement.preliminary_generator)
    trainable = _state(refinement.generator)

    fit(refinement, steps=3, root=tmp_path)
    after = refinement.preliminary_generator.state_dict()
    assert all(torch.equal(after[k], frozen[k]) for k in frozen)
    assert not any(p.requires_grad for p in refinement.preliminary_generator.parameters())
    assert not refinement.preliminary_generator.training
    changed = refinement.generator.state_dict()
    assert any(not torch.equal(changed[k], trainable[k]) for k in trainable)
    # the frozen generator is in no optimizer
    optimized = {
        id(p)
        for opt in refinement.configure_optimizers()
        for g in opt.param_groups
        for p in g["params"]
    }
    assert not optimized & {id(p) for p in refinement.preliminary_generator.parameters()}

    # the refinement checkpoint alone runs the two-stage reconstruction
    ckpt = tmp_path / "refinement.ckpt"
    refinement.trainer.save_checkpoint(ckpt)
    loaded = RefinementPhase.load_from_checkpoint(ckpt).eval()
    with torch.no_grad():
        output = loaded.reconstruct(dict(batch))
        preliminary = loaded.preliminary_generator(
            torch.cat([batch["color_domain"], batch["edge"]], 1)
        )
        expected_out = loaded.generator(torch.cat([preliminary, batch["edge"]], 1))
    assert output.shape == batch["image"].shape
    assert output.min() >= 0 and output.max() <= 1
    assert torch.allclose(output, expected_out)


def test_hand_over_rejects_another_architecture(imitation_ckpt):
    path, _ = imitation_ckpt
    bigger = {**TINY_MODEL, "generator": {**TINY_MODEL["generator"], "base_channels": 16}}
    target = GeneratingPhase(model=bigger, loss=TINY_LOSS)
    with pytest.raises(HandOverError, match="another architecture"):
        init_from_checkpoint(target, path)


def test_hand_over_rejects_missing_file(tmp_path):
    target = GeneratingPhase(model=TINY_MODEL, loss=TINY_LOSS)
    with pytest.raises(HandOverError, match="does not exist"):
        init_from_checkpoint(target, tmp_path / "nope.ckpt")
