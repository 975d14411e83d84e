"""The phase wires the VGG terms in when weights exist and records why when they do not."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from pirec_lightning.phases import ImitationPhase

from .conftest import TINY_MODEL, fit


@pytest.fixture(scope="module")
def fake_vgg(tmp_path_factory) -> str:
    """Random VGG19 features saved the torchvision way (name carries the sha256 prefix)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v.half() for k, v in make_layers(cfgs["E"]).state_dict().items()}
    folder = tmp_path_factory.mktemp("vgg")
    tmp = folder / "vgg19.tmp"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    return str(tmp.rename(folder / f"vgg19-{digest}.pth"))


def test_vgg_terms_are_trained_and_never_checkpointed(fake_vgg, tmp_path):
    loss = {"vgg": "imagenet", "vgg_weights": fake_vgg}
    module = ImitationPhase(model=TINY_MODEL, loss=loss)
    trainer = fit(module, steps=2, root=tmp_path)
    metrics = trainer.callback_metrics
    assert metrics["train/g_perceptual"] > 0 and metrics["train/g_style"] > 0
    total = sum(metrics[f"train/g_{k}"] for k in ("l1", "adversarial", "perceptual", "style"))
    assert torch.isclose(metrics["train/g_loss"], total)
    assert module.hparams.vgg_status == "vgg19"  # loss.vgg=imagenet is VGG19
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert not any("vgg" in k for k in state)
    assert ImitationPhase.load_from_checkpoint(path).hparams.vgg_status == "vgg19"


def test_auto_without_weights_trains_without_vgg_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PIREC_OFFLINE", "1")
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    module = ImitationPhase(model=TINY_MODEL, loss={"vgg": "auto"})
    with pytest.warns(RuntimeWarning, match="WITHOUT perceptual and style"):
        trainer = fit(module, steps=1, root=tmp_path)
    assert "train/g_perceptual" not in trainer.callback_metrics
    assert module.hparams.vgg_status.startswith("off:")
    assert "vgg19-dcbb9e9d.pth" in module.hparams.vgg_status


def test_vgg_input_reaches_the_vgg(fake_vgg, tmp_path):
    raw = ImitationPhase(model=TINY_MODEL, loss={"vgg": "imagenet", "vgg_weights": fake_vgg})
    raw.setup("fit")
    assert raw.vgg.vgg_input == "raw"  # PI-REC's default
    loss = {"vgg": "imagenet", "vgg_weights": fake_vgg, "vgg_input": "imagenet"}
    normalized = ImitationPhase(model=TINY_MODEL, loss=loss)
    normalized.setup("fit")
    assert normalized.vgg.vgg_input == "imagenet"


def test_imitation_l1_and_style_as_edgeconnect_inpainting(fake_vgg, batch):
    """L1 over the image divided by the hole fraction; style on the holes only; perceptual on
    the whole images (EdgeConnect's InpaintingModel.process)."""
    from pirec_lightning.models.losses import PerceptualLoss, StyleLoss, l1_loss

    weights = {"l1": 1.0, "adversarial": 0.0, "perceptual": 1.0, "style": 1.0}
    module = ImitationPhase(
        model=TINY_MODEL, loss={**weights, "vgg": "imagenet", "vgg_weights": fake_vgg}
    )
    module.setup("fit")
    torch.manual_seed(1)
    output = torch.rand_like(batch["image"])
    target, mask = batch["image"], batch["mask"]
    terms = module.generator_losses(output, target, batch)
    expected_l1 = l1_loss(output, target) / mask.mean()
    assert terms["l1"].item() == pytest.approx(expected_l1.item(), rel=1e-5)
    assert terms["l1"] > l1_loss(output, target)
    style = StyleLoss(module.vgg)
    assert terms["style"].item() == pytest.approx(
        style(output * mask, target * mask).item(), rel=1e-5
    )
    assert terms["style"].item() != pytest.approx(style(output, target).item(), rel=1e-3)
    perceptual = PerceptualLoss(module.vgg)(output, target)
    assert terms["perceptual"].item() == pytest.approx(perceptual.item(), rel=1e-5)
