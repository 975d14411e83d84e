"""One prepared run for a CUDA machine's short window: measure every GPU target, then train the
bundled model further, then write the candidate's card, within a deadline it never passes.

    python scripts/gpu_round.py --out /tmp/round                 # 540 s, CUDA
    python scripts/gpu_round.py --device cpu --smoke --deadline 120 --out /tmp/round   # the test

Into ``--out`` (at most six files, so that they all come back from a device machine):

- ``figures.json``: the environment (GPU, driver, torch, Lightning, precision) and every GPU
  target of the benchmarks (``benchmarks/train_step.py`` eager and compiled, ``preprocess.py`` at
  batch 512 and 64, ``inference.py`` eager, compiled and CUDA graphs), each figure next to its
  target; a benchmark that fails or runs out of its time says why, and the run goes on. They run
  first, within ``--bench-seconds`` (150), each capped in time; ``--smoke`` and ``--device cpu``
  skip them, saying so.
- ``<name>.safetensors``, ``<name>.json``, ``MODEL_CARD.md``: the candidate. The recipe is
  ``conf/experiment/gpu_round.yaml`` (the bundled model's), CONTINUED from the bundled weights:
  generating from the bundled first stage and its discriminator, then refinement from the bundled
  refiner and discriminator on top of the continued first stage; the time left after the card's
  reserve is shared between them as the recipe shares its steps, each phase with Lightning's
  ``max_time`` and checkpoints on the way (SIGTERM at the phase's end saves ``last.ckpt``: a cut
  run still leaves weights). Compiled when the compiled benchmark ran and was faster. Then
  ``scripts/make_pretrained.py`` on the candidate: its card, with the bundled model on the same
  sets side by side, the replace rule's verdict and the history (the bundled rows + this run's).
- ``round.json``: the phases (steps, seconds, exit), this run's history row, the verdict, whether
  the candidate replaced the bundled files, and the commit message that says which rows changed.
- ``round.log``: every subprocess's output.

A candidate replaces the bundled files (``--model``'s folder; default the package's) only when
it wins by the card's rule (``pirec_lightning.pretrained.history.REPLACE_RULE``). On a device
machine that folder is a copy: bring the files back and run ``--apply DIR`` here, which checks
the rule again on the saved rows and that the bundled file is still the one compared against.
"""

# ruff: noqa: E402  (the clock starts before the heavy imports)
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED = time.monotonic()  # the deadline counts from here, the imports below included

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from pirec_lightning import pretrained
from pirec_lightning.checkpoints import read_checkpoint, read_checkpoint_key
from pirec_lightning.config import compose_config
from pirec_lightning.pretrained.history import compare_quality, history_row, losses_text
from pirec_lightning.training.plan import stage_config

ROOT = Path(__file__).resolve().parents[1]
#: the phases a round continues, in order (imitation only warms up a first stage from scratch)
STAGES = ("generating", "refinement")
#: seconds the candidate's card is given at the end (quality table of both models, on the GPU)
CARD_SECONDS = {"cuda": 120.0, "cpu": 60.0}
#: seconds the first phase needs before Lightning's clock starts (the data's set-up: the rest of
#: its rendering, decoding into the cache; the second phase half of it)
STARTUP_SECONDS = {"cuda": 45.0, "cpu": 5.0}
#: the longest the round waits for the data's first rendering after the benchmarks
WARM_WAIT_SECONDS = 30.0
#: after the phase's time: SIGTERM (Lightning saves last.ckpt), then this long before SIGKILL
GRACE_SECONDS = 15.0

log = logging.getLogger("gpu_round")


class Clock:
    """Seconds since the start and before the deadline."""

    def __init__(self, deadline: float, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.deadline = float(deadline)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.deadline - self.elapsed()


# ----------------------------------------------------------------------------- environment


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode == 0:
        return done.stdout.strip()
    carried = ROOT / ".gpu" / "COMMIT"  # scripts/build_carry.py writes it (no .git there)
    return carried.read_text().strip() if carried.is_file() else "unknown"


def _driver() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def precision_for(device: str) -> str:
    """The training precision ``trainer.precision=mixed`` picks on ``device``."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def environment(device: str) -> dict[str, Any]:
    """GPU, driver, torch, Lightning, precision, Python, cores and commit."""
    import pytorch_lightning as pl

    env: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "device": device,
        "gpu": None,
        "driver": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "lightning": pl.__version__,
        "precision": precision_for(device),
        "python": platform.python_version(),
        "cores": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "commit": _git_commit(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["capability"] = f"{props.major}.{props.minor}"
        env["driver"] = _driver()
    return env


# ----------------------------------------------------------------------------- benchmarks


def benchmark_plan() -> list[dict[str, Any]]:
    """The GPU targets' benchmarks, in order, each with its cap in seconds (150 in all).

    The compiled training run takes the placements ``device`` and the eager run's best one
    (all three compiled would not fit the window)."""
    bench = [sys.executable, str(ROOT / "benchmarks")]
    short = ["--repeats", "1", "--steps", "20", "--warmup", "5", "--json"]
    return [
        {
            "name": "train_step_eager",
            "command": [
                *bench[:1],
                f"{bench[1]}/train_step.py",
                "--device",
                "cuda",
                "--placements",
                "device,ahead,workers",
                "--output-dir",
                "{work}/train_step_eager",
                *short,
            ],
            "cap": 35.0,
        },
        {
            "name": "train_step_compiled",
            "command": [
                *bench[:1],
                f"{bench[1]}/train_step.py",
                "--device",
                "cuda",
                "--compile",
                "--placements",
                "{best_placements}",
                "--output-dir",
                "{work}/train_step_compiled",
                *short,
            ],
            "cap": 55.0,
        },
        {
            "name": "preprocess_batch512",
            "command": [
                *bench[:1],
                f"{bench[1]}/preprocess.py",
                "--device",
                "cuda",
                "--batch",
                "512",
                "--images",
                "2048",
                "--original-images",
                "32",
                "--repeats",
                "1",
                "--kornia-images",
                "0",
                "--worker-images",
                "0",
                "--json",
            ],
            "cap": 15.0,
        },
        {
            "name": "preprocess_batch64",
            "command": [
                *bench[:1],
                f"{bench[1]}/preprocess.py",
                "--device",
                "cuda",
                "--batch",
                "64",
                "--images",
                "512",
                "--original-images",
                "32",
                "--repeats",
                "1",
                "--kornia-images",
                "0",
                "--worker-images",
                "0",
                "--json",
            ],
            "cap": 12.0,
        },
        {
            "name": "inference",
            "command": [
                *bench[:1],
                f"{bench[1]}/inference.py",
                "--device",
                "cuda",
                "--batch",
                "64",
                "--repeats",
                "2",
                "--no-onnx",
                "--json",
            ],
            "cap": 33.0,
        },
    ]


def run_logged(
    command: list[str], timeout: float, log_file: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command`` for at most ``timeout`` s in all: SIGTERM at ``timeout`` minus
    :data:`GRACE_SECONDS` (or half of it, when shorter), SIGKILL at ``timeout``; its output
    appended to ``log_file``. Returns ``{"returncode", "seconds", "timed_out", "stdout"}``
    (stdout also when it timed out)."""
    grace = min(GRACE_SECONDS, timeout / 2)
    started = time.monotonic()
    with log_file.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}  (timeout {timeout:.0f} s)\n")
        handle.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # its own group: its DataLoader workers stop with it
        )
        timed_out = False
        try:
            stdout, _ = process.communicate(timeout=max(timeout - grace, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_group(process, signal.SIGTERM)
            try:
                stdout, _ = process.communicate(timeout=max(grace, 0.1))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                stdout, _ = process.communicate()
        handle.write(stdout or "")
    return {
        "returncode": process.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "timed_out": timed_out,
        "stdout": stdout or "",
    }


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _last_error_line(log_file: Path) -> str:
    lines = [ln.strip() for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def run_benchmarks(
    device: str, smoke: bool, clock: Clock, window: float, work: Path, log_file: Path
) -> dict[str, dict[str, Any]]:
    """Each benchmark of :func:`benchmark_plan` within ``window`` s of the start: ``{name:
    {"status": ok | failed | timed out | skipped, "why", "seconds", "result"}}``."""
    results: dict[str, dict[str, Any]] = {}
    best = "device"
    for spec in benchmark_plan():
        name = spec["name"]
        if smoke or not device.startswith("cuda"):
            why = "--smoke" if smoke else f"--device {device}"
            results[name] = {
                "status": "skipped",
                "why": f"{why}: the GPU targets are measured on a CUDA device only",
            }
            continue
        if not torch.cuda.is_available():
            results[name] = {"status": "skipped", "why": "torch sees no CUDA device"}
            continue
        left = min(window - clock.elapsed(), clock.left())
        cap = min(spec["cap"], left)
        if cap < 5:
            results[name] = {
                "status": "skipped",
                "why": f"no time left in the first {window:.0f} s",
            }
            continue
        placements = "device" if best == "device" else f"device,{best}"
        command = [part.format(work=work, best_placements=placements) for part in spec["command"]]
        done = run_logged(command, cap, log_file)
        entry: dict[str, Any] = {
            "command": " ".join(command[1:]).replace(str(ROOT) + "/", ""),
            "cap_s": round(cap, 1),
            "seconds": done["seconds"],
        }
        parsed = _last_json(done["stdout"])
        if done["timed_out"]:
            entry.update(status="timed out", why=f"stopped at its cap of {cap:.0f} s")
        elif done["returncode"] != 0 or parsed is None:
            entry.update(
                status="failed",
                why=f"exit {done['returncode']}: {_last_error_line(log_file)}",
            )
        else:
            entry.update(status="ok", result=parsed)
            if name == "train_step_eager":
                best = parsed.get("best_placement", "device")
        results[name] = entry
    return results


def _figure(results: dict, bench: str, key: str) -> Any:
    result = results.get(bench, {}).get("result") or {}
    return result.get(key)


def _best_training_rate(results: dict, bench: str) -> tuple[float | None, str | None]:
    result = results.get(bench, {}).get("result") or {}
    rates = {
        k.removesuffix("_images_per_s"): v
        for k, v in result.items()
        if k.startswith("lightning") and k.endswith("_images_per_s")
    }
    if not rates:
        return None, None
    best = max(rates, key=rates.__getitem__)
    return rates[best], best


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every GPU target of the last round with its figure (None when its benchmark did not
    give one, with the benchmark's status and why)."""
    compiled_rate, compiled_arm = _best_training_rate(results, "train_step_compiled")
    eager_rate, eager_arm = _best_training_rate(results, "train_step_eager")
    rows = [
        (
            "training, compiled, 128 px batch 64 (images/s, best placement)",
            ">= 2000",
            compiled_rate,
            "train_step_compiled",
            compiled_arm,
            lambda v: v >= 2000,
        ),
        (
            "training, eager (images/s, best placement)",
            ">= 2000",
            eager_rate,
            "train_step_eager",
            eager_arm,
            lambda v: v >= 2000,
        ),
        (
            "(a)/(b) eager, best placement",
            "<= 1.15",
            _figure(results, "train_step_eager", "best_placement_vs_bare_loop"),
            "train_step_eager",
            _figure(results, "train_step_eager", "best_placement"),
            lambda v: v <= 1.15,
        ),
        (
            "(a)/(b) compiled, best placement",
            "<= 1.15",
            _figure(results, "train_step_compiled", "best_placement_vs_bare_loop"),
            "train_step_compiled",
            _figure(results, "train_step_compiled", "best_placement"),
            lambda v: v <= 1.15,
        ),
        (
            "(a)/(c) eager: Lightning against the loop making its inputs",
            "<= 1.10",
            _figure(results, "train_step_eager", "ratio_lightning_vs_loop"),
            "train_step_eager",
            "device",
            lambda v: v <= 1.10,
        ),
        (
            "preprocessing engine at batch 512 (images/s)",
            ">= 20000",
            _figure(results, "preprocess_batch512", "engine_images_per_s"),
            "preprocess_batch512",
            None,
            lambda v: v >= 20000,
        ),
        (
            "preprocessing engine at batch 64 (images/s)",
            ">= 10000",
            _figure(results, "preprocess_batch64", "engine_images_per_s"),
            "preprocess_batch64",
            None,
            lambda v: v >= 10000,
        ),
        (
            "inference, both stages, eager, batch 64 (images/s)",
            ">= 3000",
            _figure(results, "inference", "bare_images_per_s_batch64"),
            "inference",
            "bare",
            lambda v: v >= 3000,
        ),
        (
            "inference, Reconstructor eager, batch 64 (images/s)",
            ">= 3000",
            _figure(results, "inference", "reconstructor_images_per_s_batch64"),
            "inference",
            "reconstructor",
            lambda v: v >= 3000,
        ),
        (
            "inference, Reconstructor compiled + CUDA graphs, batch 64 (images/s)",
            ">= 3000",
            _figure(results, "inference", "compiled_images_per_s_batch64"),
            "inference",
            _figure(results, "inference", "compile_mode"),
            lambda v: v >= 3000,
        ),
        (
            "inference (b)/(a) at batch 64: Reconstructor over bare",
            "<= 1.15",
            _figure(results, "inference", "b_over_a_batch64"),
            "inference",
            None,
            lambda v: v <= 1.15,
        ),
    ]
    out = []
    for name, goal, figure, bench, arm, met in rows:
        row = {"target": name, "goal": goal, "figure": figure, "met": None, "benchmark": bench}
        if arm is not None:
            row["arm"] = arm
        if figure is not None:
            row["met"] = bool(met(figure))
        else:
            row["why"] = results.get(bench, {}).get("why", "not measured")
        out.append(row)
    return out


def compile_works(results: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Train compiled when the compiled benchmark ran and beat eager."""
    compiled, _ = _best_training_rate(results, "train_step_compiled")
    eager, _ = _best_training_rate(results, "train_step_eager")
    if compiled is None:
        why = results.get("train_step_compiled", {}).get("why", "not measured")
        return False, f"eager: the compiled benchmark gave no figure ({why})"
    if eager is not None and compiled <= eager:
        return False, f"eager: compiled {compiled:.0f} images/s is not above eager {eager:.0f}"
    return True, f"compiled: {compiled:.0f} images/s against eager {eager or 0:.0f}"


def placement_from(results: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """``data.preprocess_on`` for training: the fastest placement the benchmarks measured."""
    for bench in ("train_step_compiled", "train_step_eager"):
        best = _figure(results, bench, "best_placement")
        if best:
            return best, f"fastest placement in {bench}"
    return "device", "the default: no training benchmark gave a placement"


# ----------------------------------------------------------------------------- training


def bundled_source(model: str) -> tuple[str, Path, Path]:
    """``(name, safetensors file, folder)`` of ``--model``: a bundled name or a file."""
    if model.endswith(".safetensors"):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--model {model} does not exist: give a .safetensors file")
        return path.stem, path, path.parent
    path = pretrained.model_file(model)
    return path.stem, path, path.parent


def recipe_overrides(bundled: dict[str, Any]) -> list[str]:
    """The bundled model's own sizes, so the recipe's networks fit its weights."""
    model = bundled["hyper_parameters"]["model"]
    data = bundled["datamodule_hyper_parameters"]
    return [
        f"model.generator.base_channels={model['generator']['base_channels']}",
        f"model.generator.res_blocks={model['generator']['res_blocks']}",
        f"model.discriminator.base_channels={model['discriminator']['base_channels']}",
        f"data.image_size={data['image_size']}",
    ]


#: a seconds-long CPU round: tiny images and batches, a few steps, no validation or logs
SMOKE_OVERRIDES = [
    "trainer=cpu",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.cache=none",
    "data.avatars.count=48",
    "trainer.limit_val_batches=0",
    "~logger",
    "~callbacks.lr_monitor",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=2",
]
SMOKE_STEPS = {"generating": 3, "refinement": 2}


#: the Iconify tarballs ``scripts/build_carry.py`` carries (``data.icons.tarballs``: offline)
CARRIED_TARBALLS = ROOT / ".gpu" / "iconify-tarballs"


def machine_overrides(device: str) -> list[str]:
    """What depends on the machine, not the recipe: the loader's workers (the first epoch
    renders and decodes every split)."""
    if device == "cpu":  # the recipe is a GPU one
        return ["trainer=cpu"]
    cores = len(os.sched_getaffinity(0))
    return [f"data.num_workers={max(2, min(16, cores - 2))}"]


def compose_round(args: argparse.Namespace, bundled: dict, work: Path, extra: list[str]):
    """The recipe (``--experiment``) at the bundled sizes, with the machine's and the round's
    overrides, then the command line's; where the data has icons, the carried Iconify tarballs
    (a device machine has no network)."""
    overrides = [f"experiment={args.experiment}", *recipe_overrides(bundled)]
    overrides += SMOKE_OVERRIDES if args.smoke else machine_overrides(args.device)
    overrides += extra + list(args.overrides)
    cfg = compose_config(overrides, output_dir=work / "train")
    icons = OmegaConf.select(cfg, "data.icons")
    if icons is not None and icons.get("tarballs") is None and CARRIED_TARBALLS.is_dir():
        overrides.append(f"data.icons.tarballs={CARRIED_TARBALLS}")
        cfg = compose_config(overrides, output_dir=work / "train")
    return cfg


def max_time(seconds: float) -> str:
    """Lightning's ``max_time`` (``DD:HH:MM:SS``) of ``seconds`` (at least 1)."""
    seconds = max(1, int(seconds))
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _stage_file(
    cfg: DictConfig,
    name: str,
    work: Path,
    init_from: str,
    max_seconds: float,
    steps: int,
    file: Path | None = None,
) -> Path:
    """Phase ``name`` of the recipe as a single-phase config file, with its ``init_from``,
    ``max_steps`` (-1: until ``max_time``) and ``max_time``."""
    stage = stage_config(cfg, name, work / "train")
    with open_dict(stage):
        stage.init_from = init_from
        stage.trainer.max_steps = steps
        stage.trainer.max_time = max_time(max_seconds)
        stage.optimized_metric = None
    file = file or work / f"{name}.yaml"
    OmegaConf.save(stage, file)
    return file


def merge_checkpoint(bundled: dict, pieces: dict[str, Path], file: Path, like: Path | None) -> Path:
    """A refinement checkpoint made of the bundled tensors with the trained ones laid over:
    ``pieces`` maps a prefix of the result to ``checkpoint path:prefix`` to take it from."""
    state = dict(bundled["state_dict"])
    for target, source in pieces.items():
        path, prefix = str(source).rsplit("::", 1)
        theirs = read_checkpoint(Path(path), "checkpoint")["state_dict"]
        taken = {k[len(prefix) :]: v for k, v in theirs.items() if k.startswith(prefix)}
        if not taken:
            raise ValueError(f"{path} holds no {prefix!r} weights")
        state = {k: v for k, v in state.items() if not k.startswith(target)}
        state.update({target + k: v.float() for k, v in taken.items()})
    base = read_checkpoint(like, "checkpoint") if like is not None else bundled
    merged = {
        "state_dict": state,
        "pirec_phase": "refinement",
        "hyper_parameters": base.get("hyper_parameters", bundled["hyper_parameters"]),
        "datamodule_hyper_parameters": base.get(
            "datamodule_hyper_parameters", bundled["datamodule_hyper_parameters"]
        ),
    }
    torch.save(merged, file)
    return file


def _steps(last: Path) -> int:
    return int(read_checkpoint_key(last, "global_step", 0)) // 2 if last.is_file() else 0


def train_round(
    args: argparse.Namespace,
    cfg: DictConfig,
    bundled: dict,
    clock: Clock,
    work: Path,
    log_file: Path,
) -> dict[str, Any]:
    """Generating, then refinement, continued from the bundle, in one process (one start-up),
    in the time the deadline leaves after the card's reserve; returns what each phase did and
    the candidate's merged checkpoint (None when neither phase left weights)."""
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    reserve = args.card_seconds if args.card_seconds is not None else CARD_SECONDS[kind]
    train_end = clock.deadline - reserve
    recipe = {n: int(cfg.phase.stages[n].get("max_steps") or 1) for n in STAGES}
    last = {n: work / "train" / n / "checkpoints" / "last.ckpt" for n in STAGES}
    # the bundled weights as a torch checkpoint: generating takes its first stage (and the first
    # stage's discriminator where it keeps one, phases/handover.py), refinement all of it
    bundled_ckpt = work / "bundled.ckpt"
    torch.save(bundled, bundled_ckpt)
    plan = {
        "stages": {
            n: str(
                _stage_file(
                    cfg, n, work, str(bundled_ckpt), 1, SMOKE_STEPS[n] if args.smoke else -1
                )
            )
            for n in STAGES
        },
        "share": {n: recipe[n] / sum(recipe.values()) for n in STAGES},
        # wall-clock seconds (time.time) at which training must be over
        "train_end": time.time() + (train_end - clock.elapsed()),
        "startup_s": STARTUP_SECONDS[kind],
        "bundled_ckpt": str(bundled_ckpt),
        "record": str(work / "phases.json"),
    }
    plan_file = work / "train_plan.json"
    plan_file.write_text(json.dumps(plan, indent=2))
    left = train_end - clock.elapsed()
    phases: dict[str, dict[str, Any]] = {}
    if left < 10:
        for name in STAGES:
            phases[name] = {"status": "skipped", "why": f"{left:.0f} s left before the card"}
    else:
        done = run_logged(
            [sys.executable, str(Path(__file__).resolve()), "--train", str(plan_file)],
            left + GRACE_SECONDS,
            log_file,
        )
        record = Path(plan["record"])
        phases = json.loads(record.read_text()) if record.is_file() else {}
        for name in STAGES:
            phases.setdefault(name, {"status": "not started"})
            phase = phases[name]
            phase["steps"] = _steps(last[name])
            if last[name].is_file():
                hparams = read_checkpoint(last[name], "checkpoint").get("hyper_parameters", {})
                phase["losses"] = losses_text(hparams.get("loss") or {}, hparams.get("vgg_status"))
        phases["process"] = {k: done[k] for k in ("returncode", "seconds", "timed_out")}
        if done["returncode"] != 0:
            phases["process"]["why"] = _last_error_line(log_file)
    pieces = {}
    if last["generating"].is_file():
        pieces["preliminary_generator."] = f"{last['generating']}::generator."
        pieces["preliminary_discriminator."] = f"{last['generating']}::discriminator."
    if last["refinement"].is_file():
        pieces["generator."] = f"{last['refinement']}::generator."
        pieces["discriminator."] = f"{last['refinement']}::discriminator."
    candidate = None
    if pieces:
        like = last["refinement"] if last["refinement"].is_file() else None
        candidate = merge_checkpoint(bundled, pieces, work / "candidate.ckpt", like)
    return {"phases": phases, "candidate_checkpoint": candidate}


def train_stages(plan_file: str) -> int:
    """The round's training process: generating, then refinement on top of it, each with the
    ``max_time`` that ``train_end`` leaves it (the phase's share of it; refinement the rest);
    what each did goes to the plan's ``record`` after each phase."""
    from pirec_lightning.errors import PirecError, RunInterrupted
    from pirec_lightning.training import train
    from pirec_lightning.training.phase import sigterm_outside_fit

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, sigterm_outside_fit)
    plan = json.loads(Path(plan_file).read_text())
    record: dict[str, dict[str, Any]] = {}
    names = list(plan["stages"])
    for n, name in enumerate(names):
        started = time.time()
        left = plan["train_end"] - started
        # Lightning's clock starts after the data's set-up (the first phase also finishes the
        # data's rendering, the next one only decodes): the phases share what is left after
        # those, as the recipe shares its steps; the last takes the rest
        setups = [plan["startup_s"] * (1.0 if k == 0 else 0.5) for k in range(len(names))]
        if n == len(names) - 1:
            seconds = left - setups[n]
        else:
            seconds = (left - sum(setups[n:])) * plan["share"][name]
        budget = seconds + setups[n]
        entry: dict[str, Any] = {"budget_s": round(budget, 1), "max_time_s": int(seconds)}
        record[name] = entry
        if seconds < 5:
            entry.update(status="skipped", why=f"{left:.0f} s left for training")
            continue
        cfg = OmegaConf.load(plan["stages"][name])
        with open_dict(cfg):
            cfg.trainer.max_time = max_time(seconds)
            if name == "refinement":
                generating = Path(plan["stages"]["generating"]).parent / "train" / "generating"
                first = generating / "checkpoints" / "last.ckpt"
                if first.is_file():  # the continued first stage under the bundled refiner
                    bundled = torch.load(plan["bundled_ckpt"], weights_only=True)
                    cfg.init_from = str(
                        merge_checkpoint(
                            bundled,
                            {"preliminary_generator.": f"{first}::generator."},
                            Path(plan["bundled_ckpt"]).with_name("refinement_init.ckpt"),
                            None,
                        )
                    )
        entry["init_from"] = str(cfg.init_from)
        entry["compile"] = bool(cfg.model.get("compile"))
        entry["preprocess_on"] = str(cfg.data.get("preprocess_on", "device"))
        try:
            train(cfg)
            entry["status"] = "ok"
        except RunInterrupted as error:  # SIGTERM at the deadline: last.ckpt is saved, stop
            entry.update(status="stopped at the deadline", why=str(error).splitlines()[0])
            entry["seconds"] = round(time.time() - started, 1)
            break
        except PirecError as error:  # a phase that stops says why; the next one still runs
            entry.update(status="stopped", why=str(error).splitlines()[0])
        except Exception as error:  # noqa: BLE001 (the round goes on with the other phase)
            entry.update(status="failed", why=f"{type(error).__name__}: {error}"[:300])
            logging.getLogger("gpu_round").exception("phase %s failed", name)
        entry["seconds"] = round(time.time() - started, 1)
        Path(plan["record"]).write_text(json.dumps(record, indent=2))
    Path(plan["record"]).write_text(json.dumps(record, indent=2))
    return 0


def warm_data(stage_file: str, processes: int) -> int:
    """Render every split once into the data's disk cache (the subprocess that runs beside the
    benchmarks, so that training does not wait for the first epoch's rendering)."""
    from torch.utils.data import DataLoader

    from pirec_lightning.training.builders import build_datamodule

    datamodule = build_datamodule(OmegaConf.load(stage_file))
    started, count = time.monotonic(), 0
    for split in ("train", "val", "test"):
        dataset = datamodule.dataset(split)
        loader = DataLoader(
            dataset, batch_size=None, num_workers=processes, collate_fn=lambda item: None
        )
        for _ in loader:
            count += 1
    print(json.dumps({"items": count, "seconds": round(time.monotonic() - started, 1)}))
    return 0


# ----------------------------------------------------------------------------- card + replace


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_text(cfg: DictConfig) -> str:
    """The round's data in a few words, for its history row."""
    data = cfg.data
    held = []
    if data.get("avatars") is not None:
        held += list(data.avatars.get("heldout_styles") or [])
    if data.get("icons") is not None:
        held += list(data.icons.get("heldout_sets") or [])
    held_text = f"{', '.join(held)} held out" if held else ""
    if data.get("mix") is not None:
        weights = ", ".join(f"{k} {v:g}" for k, v in data.mix.weights.items())
        return f"mix ({weights}; {held_text}), {data.image_size} px"
    if data.get("icons") is not None:
        return f"icons ({held_text}), {data.image_size} px"
    if data.get("avatars") is not None:
        return f"avatars ({data.avatars.count}, {held_text}), {data.image_size} px"
    if data.get("root") is not None:
        return f"folder {data.root}, {data.image_size} px"
    return f"emoji, {data.image_size} px"


def replace_bundled(out: Path, name: str, folder: Path) -> list[str]:
    """Copy the candidate's files over the bundled ones in ``folder``."""
    copied = []
    for file in (f"{name}.safetensors", f"{name}.json", "MODEL_CARD.md"):
        shutil.copyfile(out / file, folder / file)
        copied.append(str(folder / file))
    return copied


def commit_message(card: dict[str, Any], verdict: dict[str, Any], name: str) -> str:
    rows = card.get("history", [])
    n = len(rows)
    last = rows[-1] if rows else {}
    steps = ", ".join(f"{k} {v}" for k, v in last.get("steps", {}).items())
    return (
        f"{name}: history row {n} added ({last.get('hardware', '?')}, {steps} generator steps, "
        f"{last.get('gpu_seconds', 0):.0f} s); quality rows replaced by the candidate's; "
        f"replace rule: {verdict['reason']}"
    )


def apply(folder: Path, model: str) -> int:
    """``--apply DIR``: replace the bundled files with the candidate of a round when its card's
    rows still win by the rule and the bundled file is still the one it was compared against."""
    round_file = folder / "round.json"
    if not round_file.is_file():
        print(f"error: {round_file} does not exist: give the round's --out folder", file=sys.stderr)
        return 2
    record = json.loads(round_file.read_text())
    name, bundled_file, bundled_dir = bundled_source(model)
    card_file = folder / f"{name}.json"
    if not card_file.is_file() or "comparison" not in json.loads(card_file.read_text()):
        print(f"error: {card_file} holds no comparison: the round wrote no card", file=sys.stderr)
        return 2
    if sha256(bundled_file) != record.get("bundled_sha256"):
        print(
            f"error: {bundled_file} is not the file the candidate was compared against "
            "(its sha256 differs): run the round again",
            file=sys.stderr,
        )
        return 2
    card = json.loads(card_file.read_text())
    verdict = compare_quality(card["quality"], card["comparison"]["bundled_quality"])
    print(f"the candidate is {verdict['reason']}")
    if not verdict["better"]:
        print(f"{bundled_file} stays")
        return 0
    for path in replace_bundled(folder, name, bundled_dir):
        print(f"replaced {path}")
    print(record.get("commit_message", ""))
    return 0


def write_card(
    args: argparse.Namespace,
    name: str,
    bundled_file: Path,
    bundled_dir: Path,
    row_file: Path,
    candidate: Path,
    steps: dict[str, int],
    seconds: float,
    hardware: str,
    commit: str,
    timeout: float,
    log_file: Path,
    config_file: Path | None,
    mix: bool = False,
) -> dict[str, Any]:
    """``scripts/make_pretrained.py`` on the candidate, the bundled model on the same sets."""
    compare = f"{name} (bundled)={bundled_file}"
    command = [sys.executable, str(ROOT / "scripts" / "make_pretrained.py")]
    command += ["--weights", str(candidate), "--name", name, "--out-dir", str(args.out)]
    command += ["--compare", compare, "--continues", str(bundled_dir / f"{name}.json")]
    command += ["--history-row", str(row_file), "--wall-seconds", f"{seconds:.1f}"]
    command += ["--steps", ",".join(f"{k}={v}" for k, v in steps.items())]
    command += ["--command", "python scripts/gpu_round.py " + " ".join(args.argv)]
    command += ["--hardware", hardware, "--commit", commit, "--experiment", args.experiment]
    command += ["--device", args.device, "--avatars-count", str(args.avatars_count)]
    command += ["--emoji-size", str(args.emoji_size)]
    command += ["--emoji-count", str(args.emoji_count)] if args.emoji_count else []
    if mix:  # the mix's test split too, per source and held-out set
        command += ["--mix"] + (["--mix-count", "8"] if args.smoke else [])
    command += ["--noto", args.noto] if args.noto else []
    command += ["--config-file", str(config_file)] if config_file is not None else []
    return run_logged(command, timeout, log_file)


# ----------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds, never passed")
    parser.add_argument("--out", help="the output folder (at most six files)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--smoke", action="store_true", help="benchmarks skipped, a few tiny training steps"
    )
    parser.add_argument(
        "--model", default=pretrained.DEFAULT_MODEL, help="bundled name or .safetensors"
    )
    parser.add_argument("--experiment", default="gpu_round", help="the recipe (conf/experiment)")
    parser.add_argument(
        "--work",
        help="run dirs and checkpoints, kept out of --out so that a device machine sends back "
        "only the round's files (default: a new folder in $TMPDIR)",
    )
    parser.add_argument("--bench-seconds", type=float, default=150.0)
    parser.add_argument("--card-seconds", type=float, default=None, help="reserved for the card")
    parser.add_argument("--avatars-count", type=int, help="avatars in the card (200; smoke 4)")
    parser.add_argument("--emoji-count", type=int, help="emoji in the card (all; smoke 4)")
    parser.add_argument("--emoji-size", type=int, default=64)
    parser.add_argument("--noto", help="noto_emoji_128.npz, for the card's table")
    parser.add_argument(
        "--warm-processes", type=int, default=8, help="render the data beside the benchmarks"
    )
    parser.add_argument("--no-replace", action="store_true", help="never replace the bundle")
    parser.add_argument("--apply", metavar="DIR", help="replace from a finished round's --out")
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--warm-data", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides over the recipe")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.avatars_count is None:
        args.avatars_count = 4 if args.smoke else 200
    if args.emoji_count is None and args.smoke:
        args.emoji_count = 4
    if not (args.out or args.apply or args.train or args.warm_data):
        parser.error("give --out DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.train:
        return train_stages(args.train)
    if args.warm_data:
        return warm_data(args.warm_data, args.warm_processes)
    if args.apply:
        return apply(Path(args.apply), args.model)
    clock = Clock(args.deadline, STARTED)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    work = (
        Path(args.work).expanduser().resolve()
        if args.work
        else Path(tempfile.mkdtemp(prefix=f"pirec_gpu_round_{out.name}_"))
    )
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "train", ignore_errors=True)  # a finished phase there would be skipped
    log_file = out / "round.log"
    log_file.write_text(f"gpu_round {' '.join(args.argv)}\n")
    name, bundled_file, bundled_dir = bundled_source(args.model)
    bundled = pretrained.read_pretrained(path=bundled_file)
    env = environment(args.device)
    figures: dict[str, Any] = {"environment": env, "deadline_s": args.deadline}
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")

    # the data's first rendering, beside the benchmarks (CPU, niced), so training starts warm
    cfg = compose_round(args, bundled, work, [])
    warm = None
    if not args.smoke:  # a smoke round's few tiny items render as they are read
        warm_file = _stage_file(cfg, "generating", work, "none", 1, 1, work / "warm.yaml")
        warm = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--warm-data", str(warm_file)]
            + ["--warm-processes", str(args.warm_processes)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=(lambda: os.nice(10)),  # below the benchmarks
        )
        figures["concurrent"] = (
            f"the data's first rendering ran beside the benchmarks ({args.warm_processes} "
            "niced CPU processes)"
        )
    results = run_benchmarks(args.device, args.smoke, clock, args.bench_seconds, work, log_file)
    figures["benchmarks"] = results
    figures["targets"] = targets(results)
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    if warm is not None:
        try:  # at most WARM_WAIT s more; then it goes on beside training (niced) until its end
            warm_out, _ = warm.communicate(timeout=WARM_WAIT_SECONDS)
            figures["data_warm"] = _last_json(warm_out) or {"status": f"exit {warm.returncode}"}
        except subprocess.TimeoutExpired:
            figures["data_warm"] = {"status": "still rendering when training started"}
        (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")

    # training: the recipe, compiled and placed as the benchmarks say
    compiled, compile_why = compile_works(results)
    placement, placement_why = placement_from(results)
    extra = [f"model.compile={str(compiled).lower()}", f"data.preprocess_on={placement}"]
    extra.append(f"trainer.precision={env['precision']}")
    cfg = compose_round(args, bundled, work, extra)
    record: dict[str, Any] = {
        "model": name,
        "bundled_file": str(bundled_file),
        "bundled_sha256": sha256(bundled_file),
        "work": str(work),  # the run dirs and checkpoints
        "recipe": f"experiment={args.experiment}",
        "overrides": (SMOKE_OVERRIDES if args.smoke else machine_overrides(args.device))
        + extra
        + list(args.overrides),
        "compile": compile_why,
        "preprocess_on": placement_why,
        "train_started_s": round(clock.elapsed(), 1),
    }
    trained = train_round(args, cfg, bundled, clock, work, log_file)
    if warm is not None and warm.poll() is None:
        _signal_group(warm, signal.SIGKILL)
        warm.communicate()
    record["phases"] = trained["phases"]
    record["train_ended_s"] = round(clock.elapsed(), 1)
    steps = {n: p["steps"] for n, p in trained["phases"].items() if p.get("steps")}
    seconds = trained["phases"].get("process", {}).get("seconds", 0.0)  # start-up included
    hardware = (
        f"one {env['gpu']}, torch {env['torch']}, {env['precision']}"
        if env["gpu"]
        else f"{env['machine']} CPU ({env['cores']} cores), torch {env['torch']}"
    )
    if compiled:
        hardware += ", compiled"
    card_before = json.loads((bundled_dir / f"{name}.json").read_text())
    rows_before = len(card_before.get("history", []))
    row = history_row(
        date=time.strftime("%Y-%m-%d", time.gmtime()),
        commit=env["commit"],
        hardware=hardware,
        steps=steps,
        gpu_seconds=seconds,
        data=data_text(cfg),
        losses="; ".join(
            f"{n}: {p['losses']}" for n, p in trained["phases"].items() if p.get("losses")
        ),
        started_from=f"{name} (history row {rows_before}, sha256 {record['bundled_sha256'][:12]})",
        note=f"`python scripts/gpu_round.py {' '.join(args.argv)}`"
        + (" (smoke)" if args.smoke else ""),
    )
    record["history_row"] = row
    record["verdict"] = None
    record["replaced"] = False
    candidate = trained["candidate_checkpoint"]
    if candidate is None:
        record["card"] = "no card: no phase left weights"
    else:
        weights = work / f"{name}.safetensors"
        pretrained.write_pretrained(candidate, weights)
        row_file = work / "history_row.json"
        row_file.write_text(json.dumps(row))
        stage_yaml = work / "refinement.yaml"
        done = write_card(
            args,
            name,
            bundled_file,
            bundled_dir,
            row_file,
            weights,
            steps,
            seconds,
            hardware,
            env["commit"],
            clock.left() - 2,
            log_file,
            stage_yaml if stage_yaml.is_file() else None,
            OmegaConf.select(cfg, "data.mix") is not None,
        )
        card_file = out / f"{name}.json"
        if done["returncode"] != 0 or done["timed_out"] or not card_file.is_file():
            record["card"] = (
                f"card not written: stopped at the deadline after {done['seconds']:.0f} s"
                if done["timed_out"]
                else f"card not written (exit {done['returncode']}): {_last_error_line(log_file)}"
            )
            if not (out / f"{name}.safetensors").is_file():
                shutil.copyfile(weights, out / f"{name}.safetensors")
        else:
            card = json.loads(card_file.read_text())
            verdict = card["comparison"]
            record["card"] = "written"
            record["verdict"] = {k: verdict[k] for k in ("better", "reason", "metric", "rows")}
            record["commit_message"] = commit_message(card, verdict, name)
            if verdict["better"] and not args.no_replace:
                record["replaced"] = replace_bundled(out, name, bundled_dir)
    record["seconds"] = round(clock.elapsed(), 1)
    (out / "round.json").write_text(json.dumps(record, indent=2) + "\n")
    verdict_text = record["verdict"]["reason"] if record["verdict"] else record["card"]
    print(f"gpu_round: {record['seconds']:.0f} s of {args.deadline:.0f}; {verdict_text}")
    print(f"replaced: {bool(record['replaced'])}; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
