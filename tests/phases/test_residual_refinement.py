"""Residual refinement (phase.module.residual=true): starts as the identity, trains, and
inference reads it back the same way."""

from __future__ import annotations

import torch

from pirec_lightning.inference import Reconstructor
from pirec_lightning.models.networks.residual import ResidualRefiner, add_correction
from pirec_lightning.phases import RefinementPhase, init_from_checkpoint
from pirec_lightning.training import train


def test_add_correction_and_module() -> None:
    image = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(add_correction(image, torch.full_like(image, 0.5)), image)
    assert add_correction(image, torch.ones_like(image)).min() >= image.min()
    assert add_correction(image, torch.zeros_like(image)).max() <= 1e-6 + (image - 1).max().clamp(0)

    class Half(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x[:, :3], 0.5)

    x = torch.rand(2, 4, 8, 8)
    torch.testing.assert_close(ResidualRefiner(Half())(x), x[:, :3])


def test_residual_refinement_starts_as_identity_and_inference_agrees(tiny_run, make_cfg, tmp_path):
    generating = tiny_run["generating"]
    model = torch.load(generating, map_location="cpu", weights_only=True)["hyper_parameters"][
        "model"
    ]
    module = RefinementPhase(model=model, loss={"vgg": "off"}, residual=True)
    init_from_checkpoint(module, generating)
    module.after_init_from("generating")
    g = torch.Generator().manual_seed(0)
    batch = {
        "color_domain": torch.rand(2, 3, 32, 32, generator=g),
        "edge": (torch.rand(2, 1, 32, 32, generator=g) > 0.8).float(),
    }
    with torch.no_grad():
        torch.testing.assert_close(module.reconstruct(batch), module.preliminary(batch))

    cfg = make_cfg(
        "phase=refinement",
        "debug=tiny",
        f"init_from={generating}",
        "phase.module.residual=true",
        "model.generator.res_blocks=1",
        "trainer.max_steps=2",
        output_dir=tmp_path / "ref",
    )
    _, objects = train(cfg)
    trained = RefinementPhase.load_from_checkpoint(objects["last_ckpt"], map_location="cpu")
    assert trained.residual
    with torch.no_grad():
        expected = trained.reconstruct(dict(batch))
        assert not torch.allclose(expected, trained.preliminary(dict(batch)))  # it trained
    reconstructor = Reconstructor.from_checkpoint(objects["last_ckpt"], device="cpu")
    final, _ = reconstructor.reconstruct_tensors(batch["edge"], batch["color_domain"])
    torch.testing.assert_close(final, expected)
