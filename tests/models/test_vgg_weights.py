import hashlib
from pathlib import Path

import pytest
import torch

from pirec_lightning.models.losses import VGGWeightsUnavailable, build_vgg, resolve_vgg19_weights
from pirec_lightning.models.losses import weights as weights_module

NAME = "vgg19-dcbb9e9d.pth"
REAL_GET_DIR = torch.hub.get_dir


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the hub cache to tmp, clear PIREC_WEIGHTS_DIR, forbid downloads; return hub dir."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv("PIREC_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("PIREC_OFFLINE", "1")

    def no_network(url: str, dst: Path) -> None:
        raise AssertionError("tests must not download")

    monkeypatch.setattr(weights_module, "_download", no_network)
    return hub


def _hashed(folder: Path, content: bytes, stem: str = "vgg19") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    path.write_bytes(content)
    return path


def test_explicit_path_wins(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = _hashed(tmp_path / "mine", b"explicit")
    env_dir = tmp_path / "env"
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(env_dir))
    other = _hashed(env_dir, b"env")
    assert resolve_vgg19_weights(explicit, filename=other.name) == explicit
    assert resolve_vgg19_weights(str(explicit)) == explicit


def test_explicit_path_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resolve_vgg19_weights(tmp_path / "nope.pth")


def test_weights_dir_found_before_hub(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = _hashed(tmp_path / "env", b"env")
    (isolated / "checkpoints").mkdir(parents=True)
    (isolated / "checkpoints" / env_file.name).write_bytes(b"hub")  # corrupt, must not be read
    monkeypatch.setenv("PIREC_WEIGHTS_DIR", str(tmp_path / "env"))
    assert resolve_vgg19_weights(filename=env_file.name) == env_file


def test_hub_dir_found(isolated: Path) -> None:
    hub_file = _hashed(isolated / "checkpoints", b"hub")
    assert resolve_vgg19_weights(filename=hub_file.name) == hub_file


def test_hub_dir_from_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", REAL_GET_DIR)  # driven by TORCH_HOME
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = _hashed(tmp_path / "torch" / "hub" / "checkpoints", b"hub")
    assert resolve_vgg19_weights(filename=hub_file.name) == hub_file


def test_corrupt_file_named(isolated: Path) -> None:
    bad = isolated / "checkpoints" / NAME
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match=r"corrupt.*delete it or replace it") as err:
        resolve_vgg19_weights()
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_file_without_hash_in_name_is_accepted(tmp_path: Path) -> None:
    plain = tmp_path / "my_vgg.pth"
    plain.write_bytes(b"anything")
    assert resolve_vgg19_weights(plain) == plain


def test_offline_message(isolated: Path) -> None:
    with pytest.raises(VGGWeightsUnavailable) as err:
        resolve_vgg19_weights()
    message = str(err.value)
    for needed in (NAME, "loss.vgg=off", "loss.vgg_weights=", "PIREC_WEIGHTS_DIR", str(isolated)):
        assert needed in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert isinstance(err.value, RuntimeError)


def test_failed_download_message(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIREC_OFFLINE")
    calls = []

    def failing(url: str, dst: Path) -> None:
        calls.append((url, dst))
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(b"partial")
        raise OSError("Name or service not known")

    monkeypatch.setattr(weights_module, "_download", failing)
    with pytest.raises(VGGWeightsUnavailable, match="Name or service not known") as err:
        resolve_vgg19_weights()
    assert calls == [(weights_module.VGG19_URL, isolated / "checkpoints" / NAME)]
    assert not (isolated / "checkpoints" / NAME).exists()  # no partial file left behind
    assert "loss.vgg=off" in str(err.value)


def test_download_lands_in_hub_dir(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIREC_OFFLINE")
    content = b"downloaded"
    name = f"vgg19-{hashlib.sha256(content).hexdigest()[:8]}.pth"

    def fake_download(url: str, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(content)

    monkeypatch.setattr(weights_module, "_download", fake_download)
    assert resolve_vgg19_weights(filename=name) == isolated / "checkpoints" / name


def test_build_vgg_auto_offline_warns() -> None:
    with pytest.warns(RuntimeWarning, match="WITHOUT perceptual and style losses"):
        vgg, reason = build_vgg("auto")
    assert vgg is None
    assert "loss.vgg=off" in reason and NAME in reason


def test_build_vgg_imagenet_offline_raises() -> None:
    with pytest.raises(VGGWeightsUnavailable, match="loss.vgg_weights"):
        build_vgg("imagenet")


def test_build_vgg_off() -> None:
    assert build_vgg("off") == (None, "disabled by loss.vgg=off")


def test_build_vgg_unknown_mode() -> None:
    with pytest.raises(ValueError, match="auto, vgg16, vgg19, imagenet, off"):
        build_vgg("pretrained")
