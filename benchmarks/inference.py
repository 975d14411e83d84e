"""Inference speed: the bare generators, ``Reconstructor`` end to end, and ONNX Runtime.

    python benchmarks/inference.py [--device cpu|cuda] [--size 128] [--batch 64] [--repeats 3]
                                   [--base-channels 64] [--res-blocks 8] [--checkpoint C]
                                   [--model NAME] [--threads N] [--json]
                                   [--no-onnx] [--no-compile] [--channels-last] [--profile PATH]

Per row: ms per image at batch 1 and images/s at ``--batch``, two stages, ``--size`` px:

(a) bare: the two generators called on prepared tensors (``torch.inference_mode``, eval; bf16
    autocast on CUDA), nothing else;
(b) Reconstructor: ``Reconstructor.reconstruct(edge, color)`` from tensors: input checks, edge
    binarization, padding, device moves, autocast on CUDA, clamping; target (b) <= 1.15 x (a);
(c) ONNX Runtime on CPU (CPUExecutionProvider) running ``pirec export --format onnx``; target: no
    slower than eager (a) on CPU;
(d) compiled: (b) with ``Reconstructor(..., compile=True)`` (``torch.compile``, the mode chosen by
    device: ``reduce-overhead`` on CUDA, the default mode on the CPU), the same weights; the
    ratio (d)/(b) is the compiled time over eager's. Its warm-up (3 calls per batch size) is not
    timed; the first call's seconds, compilation included, are reported
    (``compiled_first_call_s_batch*``), and ``compiled_max_abs_diff`` is max |(d) - (b)| at
    batch 1. ``--no-compile`` skips it;
(e) compiled + channels_last (``--channels-last``): (d) with weights and inputs in
    ``torch.channels_last`` (a copy of the weights).

``--profile PATH`` then profiles 5 calls at ``--batch`` of (d) (of (b) with ``--no-compile``):
a Chrome trace at PATH and the top ops by self time (see ``_profile.py``; on stderr with
``--json``).

(a) to (e) alternate ``--repeats`` times; each figure is the median of its runs. The networks
are PI-REC's full size by default (random weights unless ``--checkpoint``: speed does not depend
on the values). GPU target: >= 3,000 images/s for both stages at batch 64, bf16, one H100/H200.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pirec_lightning.inference import Reconstructor
from pirec_lightning.models.networks import Generator

#: the rows: letter and the label of their keys in the JSON object
ARMS = (
    ("a", "bare"),
    ("b", "reconstructor"),
    ("c", "onnxruntime_cpu"),
    ("d", "compiled"),
    ("e", "compiled_channels_last"),
)


def timed(run: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call (CUDA synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def inputs(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch)
    edge = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float()
    return edge.to(device), torch.rand(batch, 3, size, size, generator=generator).to(device)


def bare(rec: Reconstructor, edge: torch.Tensor, color: torch.Tensor) -> Callable[[], object]:
    first_stage, refiner = rec.generator, rec.refiner
    autocast = edge.device.type == "cuda"

    def run() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            first = first_stage(torch.cat([color, edge], 1))
            return refiner(torch.cat([first, edge], 1))

    return run


def onnx_session(rec: Reconstructor, folder: Path, threads: int):
    import onnxruntime

    from pirec_lightning.inference.export import export

    path = folder / "pirec.onnx"
    export(rec, "onnx", path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # the same CPU budget as eager
    # no busy-waiting threads after a run: they would slow the row timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base-channels", type=int, default=64)
    parser.add_argument("--res-blocks", type=int, default=8)
    parser.add_argument("--checkpoint", help="time a trained refinement checkpoint instead")
    parser.add_argument("--model", help="time a bundled model instead (e.g. sketch-128)")
    parser.add_argument("--no-onnx", action="store_true", help="skip (c)")
    parser.add_argument("--no-compile", action="store_true", help="skip (d) and (e)")
    parser.add_argument(
        "--channels-last", action="store_true", help="add (e): compiled + channels_last"
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="write a Chrome trace of 5 calls of (d), or (b)"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: torch's)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.checkpoint or args.model:
        if args.model:
            rec = Reconstructor.pretrained(args.model, device, run_size="input")
        else:
            rec = Reconstructor.from_checkpoint(args.checkpoint, device, run_size="input")
        if rec.refiner is None:
            parser.error("--checkpoint must be a refinement checkpoint (two stages)")
    else:
        size = {"base_channels": args.base_channels, "res_blocks": args.res_blocks}
        rec = Reconstructor(Generator(**size), Generator(**size)).to(device)
    onnx = None
    folder = tempfile.TemporaryDirectory()
    if not args.no_onnx:
        onnx = onnx_session(rec.to("cpu"), Path(folder.name), torch.get_num_threads())
        rec.to(device)
    compiled = {}  # (d) and (e): lazily compiled on their first call
    if not args.no_compile:
        compiled["d"] = Reconstructor(rec.generator, rec.refiner, compile=True).to(device)
        if args.channels_last:
            copies = copy.deepcopy(rec.generator), copy.deepcopy(rec.refiner)
            compiled["e"] = Reconstructor(*copies, compile=True, channels_last=True).to(device)

    rows: dict[str, dict[int, list[float]]] = {"a": {}, "b": {}, "c": {}, "d": {}, "e": {}}
    first_calls: dict[str, dict[int, float]] = {name: {} for name in compiled}
    difference = {}
    for batch in (1, args.batch):
        edge, color = inputs(batch, args.size, device)
        runs = {"a": bare(rec, edge, color), "b": lambda e=edge, c=color: rec.reconstruct(e, c)}
        if onnx is not None:
            feed = {"edge": edge.cpu().numpy(), "color": color.cpu().numpy()}
            runs["c"] = lambda f=feed: onnx.run(None, f)
        for name, model in compiled.items():
            runs[name] = lambda e=edge, c=color, m=model: m.reconstruct(e, c)
        for name, run in runs.items():  # warm-up (allocator, autotuning, ORT's first run)
            if name in compiled:  # compilation, then (CUDA graphs) warm-up and capture
                first_calls[name][batch] = timed(run, device)
                timed(run, device)
            timed(run, device)
        if batch == 1 and compiled:
            reference = rec.reconstruct(edge, color)
            for name, model in compiled.items():
                difference[name] = float((model.reconstruct(edge, color) - reference).abs().max())
        for _ in range(args.repeats):
            for name, run in runs.items():
                rows[name].setdefault(batch, []).append(timed(run, device))

    medians = {n: {b: statistics.median(t) for b, t in r.items()} for n, r in rows.items() if r}
    result = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "size": args.size,
        "batch": args.batch,
        "repeats": args.repeats,
        "networks": f"pretrained:{args.model}"
        if args.model
        else "checkpoint"
        if args.checkpoint
        else f"b={args.base_channels}, res_blocks={args.res_blocks}",
        "parameters_per_stage": sum(p.numel() for p in rec.generator.parameters()),
    }
    for name, label in ARMS:
        if name in medians:
            result[f"{label}_ms_per_image_batch1"] = round(medians[name][1] * 1000, 2)
            result[f"{label}_images_per_s_batch{args.batch}"] = round(
                args.batch / medians[name][args.batch], 2
            )
    a1, ab = medians["a"][1], medians["a"][args.batch]
    result["b_over_a_batch1"] = round(medians["b"][1] / a1, 3)
    result[f"b_over_a_batch{args.batch}"] = round(medians["b"][args.batch] / ab, 3)
    if "c" in medians:
        result["c_over_a_batch1"] = round(medians["c"][1] / a1, 3)
        result[f"c_over_a_batch{args.batch}"] = round(medians["c"][args.batch] / ab, 3)
    if compiled:
        result["compile_mode"] = compiled["d"].resolved_compile_mode() or "default"
    for name, label in ARMS[3:]:
        if name in medians:
            for batch in (1, args.batch):
                ratio = medians[name][batch] / medians["b"][batch]
                result[f"{name}_over_b_batch{batch}"] = round(ratio, 3)
                result[f"{label}_first_call_s_batch{batch}"] = round(first_calls[name][batch], 2)
            result[f"{label}_max_abs_diff"] = float(f"{difference[name]:.2e}")
    folder.cleanup()
    if args.profile:
        from _profile import profile  # benchmarks/_profile.py

        edge, color = inputs(args.batch, args.size, device)
        model = compiled.get("d", rec)
        result["profile"] = {"path": args.profile, "arm": "d" if compiled else "b"}
        printed = io.StringIO()  # shown after the figures
        result["profile"]["table"] = profile(
            lambda: model.reconstruct(edge, color), args.profile, device=device, file=printed
        )
    if args.json:
        if args.profile:
            print(printed.getvalue(), end="", file=sys.stderr)
        print(json.dumps(result))
        return
    print(
        f"device {result['device']} ({result['gpu'] or str(result['threads']) + ' threads'}), "
        f"torch {result['torch']}, {args.size} px, networks {result['networks']} "
        f"({result['parameters_per_stage']:,} parameters per stage), median of {args.repeats}"
    )
    print(f"{'row':<34}{'ms/image @1':>14}{f'images/s @{args.batch}':>18}")
    for name, label in ARMS:
        if name in medians:
            print(
                f"({name}) {label:<30}{result[f'{label}_ms_per_image_batch1']:>14}"
                f"{result[f'{label}_images_per_s_batch{args.batch}']:>18}"
            )
    print(
        f"(b)/(a): {result['b_over_a_batch1']} at batch 1, "
        f"{result[f'b_over_a_batch{args.batch}']} at batch {args.batch} (target <= 1.15)"
    )
    if "c" in medians:
        print(
            f"(c)/(a): {result['c_over_a_batch1']} at batch 1, "
            f"{result[f'c_over_a_batch{args.batch}']} at batch {args.batch} "
            "(target <= 1.0 on CPU)"
        )
    for name, label in ARMS[3:]:
        if name in medians:
            print(
                f"({name})/(b): {result[f'{name}_over_b_batch1']} at batch 1, "
                f"{result[f'{name}_over_b_batch{args.batch}']} at batch {args.batch} "
                f"({label} over eager; mode {result['compile_mode']}; first call "
                f"{result[f'{label}_first_call_s_batch1']} s; max |diff| "
                f"{result[f'{label}_max_abs_diff']:.1e})"
            )
    if device.type != "cuda":
        print("GPU target (>= 3,000 images/s, batch 64, bf16, H100/H200): not measured here")
    if args.profile:
        print(printed.getvalue(), end="")


if __name__ == "__main__":
    main()
