"""Training-step throughput: the Lightning phase against a hand-written PyTorch loop.

    python benchmarks/train_step.py [--device cpu|cuda] [--precision P] [--size S] [--batch B]
                                    [--steps N] [--repeats R] [--compile] [--json]
                                    [--placements device,ahead,workers] [--profile PATH]

In one run, on the generating phase (edge + color domain -> image; L1 + LSGAN, VGG off) with the
same networks, optimizers and images:

(a) lightning: ``GeneratingPhase`` under a ``pytorch_lightning.Trainer`` fed by the real
    ``PIRECDataModule`` (embedded emoji, ``data.cache``, Kornia flip, preprocessing engine in
    ``on_after_batch_transfer``), as ``python train.py phase=generating`` runs it;
(b) loop: a hand-written loop, D step then G step, on precomputed inputs already on the device;
(c) loop + preprocessing: (b) that makes its inputs every step with the same augmentation and
    ``Preprocessor`` from images cached on the device.

(a) runs once per ``data.preprocess_on`` in ``--placements``: ``device`` (the inputs in series with
the step: the reference row, whose figures keep the ``lightning_*`` keys), ``ahead`` (the next
batch's inputs on a side stream during the step) and ``workers`` (made on the CPU by
``--placement-workers`` DataLoader workers from ``data.cache=ram``); each adds
``lightning_<placement>_*`` keys and its ratio to (b), the target being (a)/(b) <= 1.15.
``--profile PATH`` writes a ``torch.profiler`` Chrome trace of a few steps of (c) (the networks
and the preprocessing) and prints the top ops by time (see ``_profile.py``).

Each prints images/s (the median of ``--repeats`` alternating runs), seconds per step, peak memory
(CUDA: ``max_memory_allocated``; CPU: growth of the process's peak RSS) and the ratios; ``--json``
prints one object whose ``ratio_lightning_vs_loop`` is seconds per step of (a) over (c).
``--max-ratio X`` exits with status 1 when that ratio is above X (the target is 1.10).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from pirec_lightning.config import compose_config
from pirec_lightning.phases.numerics import fused_options
from pirec_lightning.training import build_datamodule, build_phase

TARGET_RATIO = 1.10
#: (a) with the inputs made off the step's path, over (b) on precomputed inputs
TARGET_PLACEMENT_RATIO = 1.15
PLACEMENTS = ("device", "ahead", "workers")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Memory:
    """Peak memory of one measured block: CUDA allocator peak, or the process's peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Memory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _status_kb("VmHWM") * 1024
        self.peak_mb = max(peak - self.base, 0) / 2**20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def make_config(args: argparse.Namespace, placement: str = "device"):
    """The training config of (a); (b) and (c) read their networks and settings from it."""
    workers = placement == "workers"
    overrides = [
        "phase=generating",
        f"data.image_size={args.size}",
        f"data.batch_size={args.batch}",
        f"data.limit={args.batch * (args.warmup + args.steps)}",
        f"data.num_workers={args.placement_workers if workers else args.workers}",
        f"data.cache={'ram' if workers and args.cache == 'device' else args.cache}",
        f"data.preprocess_on={placement}",
        f"model.generator.base_channels={args.base_channels}",
        f"model.generator.res_blocks={args.res_blocks}",
        f"model.discriminator.base_channels={args.base_channels}",
        "loss.vgg=off",
        f"trainer.precision={args.precision}",
        f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else 'cpu'}",
    ]
    if args.compile:
        overrides.append("model.compile=true")
    return compose_config(overrides, output_dir=args.output_dir)


# --------------------------------------------------------------------------------------- (a)
def lightning(cfg, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """Seconds per step and peak MB of the phase under a Trainer (warm-up steps excluded)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    class Clock(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == args.warmup - 1:
                _sync(device)
                self.start = time.perf_counter()
            if batch_idx == args.warmup + args.steps - 1:
                _sync(device)
                self.seconds = time.perf_counter() - self.start

    datamodule, model, clock = build_datamodule(cfg), build_phase(cfg), Clock()
    trainer = instantiate(
        cfg.trainer,
        devices=[device.index or 0] if device.type == "cuda" else 1,
        max_steps=(args.warmup + args.steps) * model.optimizer_steps_per_batch,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    with Memory(device) as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=datamodule)
    return clock.seconds / args.steps, memory.peak_mb


# ----------------------------------------------------------------------------------- (b), (c)
class Loop:
    """The hand-written GAN step on the phase's networks, losses and optimizer settings."""

    def __init__(self, cfg, device: torch.device, precision: str) -> None:
        module = build_phase(cfg).to(device)  # the same networks, built the same way
        self.generator, self.discriminator = module.generator, module.discriminator
        self.adversarial = module.adversarial_loss
        self.weights = cfg.loss
        optimizer = cfg.model.optimizer
        betas = tuple(float(b) for b in optimizer.betas)
        lr = float(optimizer.lr)
        # the implementation the phase picks (fused where the device has the kernel)
        fused = fused_options(torch.optim.Adam, dict(optimizer), device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr, betas=betas, **fused)
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr * float(cfg.model.d2g_lr), betas=betas, **fused
        )
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
        self.autocast = dict(device_type=device.type, dtype=dtype, enabled=dtype is not None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step(self, image: torch.Tensor, edge: torch.Tensor, color_domain: torch.Tensor) -> None:
        G, D = self.generator, self.discriminator
        with torch.autocast(**self.autocast):
            output = G(torch.cat([color_domain, edge], 1))
            real, fake = D(image)[0], D(output.detach())[0]
            d_loss = (self.adversarial(real, True) + self.adversarial(fake, False)) / 2
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(self.opt_d)
        D.requires_grad_(False)  # the G step needs no D weight gradients
        with torch.autocast(**self.autocast):
            logits = D(output)[0]
            g_loss = (output - image).abs().mean() * self.weights.l1 + self.adversarial(
                logits, True, for_discriminator=False
            ) * float(self.weights.adversarial)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        D.requires_grad_(True)


def loop_and_inputs(cfg, args: argparse.Namespace, device: torch.device):
    """``(loop, inputs, order)``: the hand-written loop, ``inputs(index) -> (image, edge,
    color_domain)`` made from images cached on the device, and each step's batch of indices."""
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    from pirec_lightning.data import FolderImageDataset
    from pirec_lightning.data.cache import decode_all, to_float

    files = datamodule.files()["train"]
    cached = decode_all(FolderImageDataset(files, args.size), args.workers).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    outputs = ("edge", "color_domain")

    def inputs(index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            images = to_float(cached[index])
            if datamodule.augmentation is not None:
                images = datamodule.augmentation(images)
            made = datamodule.preprocessor(images, "fit", outputs, generator=generator)
        return made["image"], made["edge"], made["color_domain"]

    total = args.warmup + args.steps
    order = torch.randperm(len(cached), device=device)[: total * args.batch].view(total, -1)
    return Loop(cfg, device, args.precision), inputs, order


def hand_written(
    cfg, args: argparse.Namespace, device: torch.device, preprocess: bool
) -> tuple[float, float]:
    """Seconds per step and peak MB of (b) (``preprocess=False``) or (c)."""
    loop, inputs, order = loop_and_inputs(cfg, args, device)
    fixed = None if preprocess else [inputs(index) for index in order]
    with Memory(device) as memory:
        for i in range(len(order)):
            if i == args.warmup:
                _sync(device)
                start = time.perf_counter()
            loop.step(*(inputs(order[i]) if preprocess else fixed[i]))
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds / args.steps, memory.peak_mb


# --------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--precision", default=None, help="bf16-mixed on CUDA, 32-true on CPU")
    parser.add_argument("--size", type=int, default=None, help="128 on CUDA, 64 on CPU")
    parser.add_argument("--batch", type=int, default=None, help="64 on CUDA, 8 on CPU")
    parser.add_argument("--base-channels", type=int, default=None, help="64 on CUDA, 16 on CPU")
    parser.add_argument("--res-blocks", type=int, default=None, help="8 on CUDA, 1 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (30 CUDA, 10 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (10 / 3)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of a, b, c")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of (a)")
    parser.add_argument("--cache", default="device", help="data.cache of (a): none|ram|device")
    parser.add_argument("--compile", action="store_true", help="model.compile=true in all three")
    parser.add_argument(
        "--placements",
        default=",".join(PLACEMENTS),
        help="data.preprocess_on of (a), comma-separated: device (the reference), ahead, workers",
    )
    parser.add_argument(
        "--placement-workers", type=int, default=None, help="DataLoader workers of (a) workers"
    )
    parser.add_argument("--profile", metavar="PATH", help="write a Chrome trace of (c)'s steps")
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 above this (a)/(c)")
    parser.add_argument("--output-dir", default="/tmp/pirec_train_step")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    defaults = {
        "precision": "bf16-mixed" if gpu else "32-true",
        "size": 128 if gpu else 64,
        "batch": 64 if gpu else 8,
        "base_channels": 64 if gpu else 16,
        "res_blocks": 8 if gpu else 1,
        "steps": 30 if gpu else 10,
        "warmup": 10 if gpu else 3,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.placement_workers is None:  # the cores left to the step's process
        args.placement_workers = max(1, min(16, len(os.sched_getaffinity(0)) - 1))
    args.placements = list(dict.fromkeys(p for p in args.placements.split(",") if p))
    unknown = sorted(set(args.placements) - set(PLACEMENTS))
    if unknown or "device" not in args.placements:
        parser.error(f"--placements takes {', '.join(PLACEMENTS)} and includes device")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    cfg = make_config(args)
    others = [p for p in args.placements if p != "device"]
    configs = {p: make_config(args, p) for p in others}
    runs: dict[str, list[tuple[float, float]]] = {
        "a": [],
        "b": [],
        "c": [],
        **{p: [] for p in others},
    }
    for _ in range(args.repeats):  # alternate, so drift of a shared machine hits all alike
        torch.manual_seed(0)
        runs["a"].append(lightning(cfg, args, device))
        for placement in others:
            torch.manual_seed(0)
            runs[placement].append(lightning(configs[placement], args, device))
        runs["b"].append(hand_written(cfg, args, device, preprocess=False))
        runs["c"].append(hand_written(cfg, args, device, preprocess=True))
    step = {key: statistics.median(s for s, _ in value) for key, value in runs.items()}
    peak = {key: max(m for _, m in value) for key, value in runs.items()}
    names = {
        "a": "lightning",
        **{p: f"lightning_{p}" for p in others},
        "b": "loop",
        "c": "loop_with_preprocessing",
    }
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "precision": args.precision,
        "size": args.size,
        "batch": args.batch,
        "base_channels": args.base_channels,
        "res_blocks": args.res_blocks,
        "compile": args.compile,
        "cache": args.cache,
        "steps": args.steps,
        "repeats": args.repeats,
        **{f"{names[k]}_images_per_s": round(args.batch / step[k], 1) for k in names},
        **{f"{names[k]}_seconds_per_step": round(step[k], 5) for k in names},
        **{f"{names[k]}_runs_s": [round(s, 5) for s, _ in runs[k]] for k in names},
        **{f"{names[k]}_peak_memory_mb": round(peak[k], 1) for k in names},
        "ratio_lightning_vs_loop": round(step["a"] / step["c"], 3),
        "ratio_lightning_vs_bare_loop": round(step["a"] / step["b"], 3),
        "ratio_loop_with_preprocessing_vs_loop": round(step["c"] / step["b"], 3),
        "target_ratio": TARGET_RATIO,
        "target_met": step["a"] / step["c"] <= TARGET_RATIO,
        "placements": args.placements,
        "placement_workers": args.placement_workers,
        **{f"ratio_lightning_{p}_vs_bare_loop": round(step[p] / step["b"], 3) for p in others},
        "target_placement_ratio": TARGET_PLACEMENT_RATIO,
    }
    best = min(["a", *others], key=step.__getitem__)
    result["best_placement"] = "device" if best == "a" else best
    result["best_placement_vs_bare_loop"] = round(step[best] / step["b"], 3)
    if args.profile:
        result["profile"] = str(args.profile)
        profile_loop(cfg, args, device)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result, names)
    if args.max_ratio is not None and result["ratio_lightning_vs_loop"] > args.max_ratio:
        print(
            f"ratio_lightning_vs_loop {result['ratio_lightning_vs_loop']} > {args.max_ratio}",
            file=sys.stderr,
        )
        sys.exit(1)
    return result


def profile_loop(cfg, args: argparse.Namespace, device: torch.device) -> None:
    """``--profile``: a Chrome trace of (c)'s steps, networks and preprocessing."""
    from _profile import profile

    loop, inputs, order = loop_and_inputs(cfg, args, device)
    steps = itertools.count()
    profile(
        lambda: loop.step(*inputs(order[next(steps) % len(order)])),
        args.profile,
        device=device,
        file=sys.stderr if args.json else None,
    )


def _print_table(r: dict, names: dict[str, str]) -> None:
    print(
        f"{r['device']} (torch {r['torch']}, {r['cores']} cores), {r['precision']}, "
        f"{r['size']} px, batch {r['batch']}, base {r['base_channels']}, "
        f"{r['res_blocks']} res blocks, compile={r['compile']}, cache={r['cache']}"
    )
    labels = {
        "a": "(a) Lightning, device",
        **{key: f"(a) Lightning, {key}" for key in names if key not in ("a", "b", "c")},
        "b": "(b) loop",
        "c": "(c) loop + preprocessing",
    }
    for key, name in names.items():
        print(
            f"{labels[key]:<26} {r[f'{name}_images_per_s']:>9,.1f} images/s  "
            f"{r[f'{name}_seconds_per_step'] * 1000:8.1f} ms/step  "
            f"peak {r[f'{name}_peak_memory_mb']:8.1f} MB  runs {r[f'{name}_runs_s']}"
        )
    print(
        f"(a)/(c) {r['ratio_lightning_vs_loop']:.3f} (target <= {r['target_ratio']}), "
        f"(a)/(b) {r['ratio_lightning_vs_bare_loop']:.3f}, "
        f"(c)/(b) {r['ratio_loop_with_preprocessing_vs_loop']:.3f}"
    )
    for placement in [p for p in r["placements"] if p != "device"]:
        print(
            f"(a, {placement})/(b) {r[f'ratio_lightning_{placement}_vs_bare_loop']:.3f} "
            f"(target <= {r['target_placement_ratio']})"
        )
    print(f"best placement: {r['best_placement']}, (a)/(b) {r['best_placement_vs_bare_loop']:.3f}")


if __name__ == "__main__":
    main()
