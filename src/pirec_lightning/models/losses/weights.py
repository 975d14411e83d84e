"""Finding the ImageNet VGG19 weights that the perceptual and style losses need.

Search order of :func:`resolve_vgg19_weights`:

1. an explicit path (``loss.vgg_weights=/path/to/vgg19-dcbb9e9d.pth``);
2. ``$PIREC_WEIGHTS_DIR/vgg19-dcbb9e9d.pth``;
3. ``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth`` (where torchvision caches it);
4. a download into that hub folder, unless ``PIREC_OFFLINE=1`` is set.

Set ``PIREC_OFFLINE=1`` on machines without network (tests, CI, clusters) to fail at once instead
of attempting the download.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from pathlib import Path

import torch

from pirec_lightning.errors import VGGWeightsUnavailable

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
DOWNLOAD_TIMEOUT_S = 10.0

# torchvision names weight files <name>-<first hex digits of their sha256>.pth.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,})\.pth?$")


def _offline() -> bool:
    return os.environ.get("PIREC_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _verify_hash(path: Path) -> Path:
    """Check ``path`` against the sha256 prefix in its name (if any); return it unchanged."""
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        return path
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise RuntimeError(
            f"{path} is corrupt: its sha256 {digest.hexdigest()[:12]}... does not start with "
            f"{match.group(1)}; delete it or replace it with a good copy"
        )
    return path


def _download(url: str, dst: Path) -> None:
    """Download ``url`` to ``dst``; fail within ``DOWNLOAD_TIMEOUT_S`` if the host is unreachable."""
    # download_url_to_file has no timeout: probe first so an offline machine does not hang.
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=DOWNLOAD_TIMEOUT_S)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), progress=True)


def resolve_vgg19_weights(
    path: str | Path | None = None,
    *,
    download: bool = True,
    filename: str = VGG19_FILENAME,
    url: str = VGG19_URL,
    verify: bool = True,
) -> Path:
    """Return the path of a verified VGG19 weight file, downloading it if needed.

    Args:
        path: explicit file; wins over every other place and must exist.
        download: try to download when the file is nowhere on disk (skipped when the
            environment variable ``PIREC_OFFLINE=1`` is set).
        filename: file name looked up in ``$PIREC_WEIGHTS_DIR`` and the hub checkpoints folder.
        url: where to download it from.
        verify: check the sha256 prefix in the file name (torchvision's convention; other
            projects' names may carry other hashes).

    Raises:
        FileNotFoundError: ``path`` is given and does not exist.
        RuntimeError: the file found or downloaded does not match the sha256 prefix in its name.
        VGGWeightsUnavailable: the file is nowhere on disk and could not be downloaded.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise FileNotFoundError(f"VGG19 weights file {explicit} does not exist")
        return _verify_hash(explicit) if verify else explicit

    weights_dir = os.environ.get("PIREC_WEIGHTS_DIR")
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = ([Path(weights_dir).expanduser() / filename] if weights_dir else []) + [
        hub_dir / filename
    ]
    for candidate in candidates:
        if candidate.is_file():
            return _verify_hash(candidate) if verify else candidate

    target = hub_dir / filename
    if _offline():
        reason = "PIREC_OFFLINE=1 is set, so no download was attempted"
    elif not download:
        reason = "downloading is disabled"
    else:
        try:
            _download(url, target)
            return _verify_hash(target) if verify else target
        except (OSError, RuntimeError) as err:  # URLError, timeouts and torch.hub errors
            if target.is_file():
                target.unlink()
            reason = f"downloading {url} failed ({type(err).__name__}: {err})"
    searched = f"$PIREC_WEIGHTS_DIR ({weights_dir or 'unset'}) and the torch hub folder ({hub_dir})"
    raise VGGWeightsUnavailable(
        f"VGG19 ImageNet weights {filename} not found in {searched}; {reason}. "
        f"Download {url} into one of those folders, or pass "
        f"loss.vgg_weights=/path/to/{filename}, or train without perceptual and style losses "
        "with loss.vgg=off."
    )
