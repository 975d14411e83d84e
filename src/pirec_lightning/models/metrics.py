"""Metrics whose networks need downloaded weights: LPIPS (AlexNet) and FID (Inception).

The weights are found as the VGG19 ones are (an explicit path, ``$PIREC_WEIGHTS_DIR``, the torch
hub cache, a download unless ``PIREC_OFFLINE=1``) and checked to be plain weights
(``weights_only``) before torchmetrics or torch-fidelity may unpickle them. Used by validation
(:mod:`pirec_lightning.phases.validation`) and ``pirec evaluate`` alike.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from pirec_lightning.checkpoints import read_checkpoint
from pirec_lightning.errors import CheckpointError
from pirec_lightning.models.losses.weights import VGGWeightsUnavailable, resolve_vgg19_weights

__all__ = ["ALEXNET", "INCEPTION", "optional_metrics"]

ALEXNET = (
    "alexnet-owt-7be5be79.pth",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)
INCEPTION = (
    "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
)


@contextmanager
def _hub_dir_with(path: Path, filename: str):
    """torchvision/torch-fidelity look their weights up in the hub cache: show them ``path``."""
    hub = Path(torch.hub.get_dir())
    if path == hub / "checkpoints" / filename:
        yield
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "checkpoints").mkdir()
        (Path(folder) / "checkpoints" / filename).symlink_to(path.resolve())
        torch.hub.set_dir(folder)
        try:
            yield
        finally:
            torch.hub.set_dir(str(hub))


def _weights(
    explicit: str | Path | None, file: tuple[str, str], verify: bool
) -> tuple[Path | None, str]:
    try:
        path = resolve_vgg19_weights(explicit, filename=file[0], url=file[1], verify=verify)
        # the libraries may unpickle it fully: only a file that is plain weights goes to them
        read_checkpoint(path, "metric weights")
        return path, ""
    except VGGWeightsUnavailable:
        return None, "not found"
    except (FileNotFoundError, RuntimeError, CheckpointError) as error:
        return None, str(error)


def optional_metrics(
    lpips_weights: str | Path | None = None, fid_weights: str | Path | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``({"lpips": factory, "fid": factory}, {"lpips": why skipped, ...})``; a factory makes
    a fresh torchmetrics metric (one per stage)."""
    factories: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    path, reason = _weights(lpips_weights, ALEXNET, verify=True)
    if path is None:
        skipped["lpips"] = (
            f"LPIPS skipped: AlexNet weights {reason}; put {ALEXNET[0]} in $PIREC_WEIGHTS_DIR or "
            f"the torch hub cache, or pass --lpips-weights PATH ({ALEXNET[1]})"
        )
    else:

        def lpips(path: Path = path) -> Any:
            from torchmetrics.image import LearnedPerceptualImagePatchSimilarity

            with _hub_dir_with(path, ALEXNET[0]):
                return LearnedPerceptualImagePatchSimilarity("alex", normalize=True)

        factories["lpips"] = lpips
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        skipped["fid"] = "FID skipped: needs torch-fidelity: pip install 'pirec-lightning[metrics]'"
        return factories, skipped
    path, reason = _weights(fid_weights, INCEPTION, verify=False)
    if path is None:
        skipped["fid"] = (
            f"FID skipped: Inception weights {reason}; put {INCEPTION[0]} in $PIREC_WEIGHTS_DIR "
            f"or the torch hub cache, or pass --fid-weights PATH ({INCEPTION[1]})"
        )
    else:

        def fid(path: Path = path) -> Any:
            from torchmetrics.image.fid import FrechetInceptionDistance

            return FrechetInceptionDistance(
                normalize=True, feature_extractor_weights_path=str(path)
            )

        factories["fid"] = fid
    return factories, skipped
