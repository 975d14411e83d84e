"""A folder through ``pirec reconstruct --input-dir`` on the CPU, next to the networks alone.

    python benchmarks/folder.py [--model sketch-128] [--pairs 100] [--size 512] [--threads 2]
                                [--batch 8] [--repeats 2] [--run-sizes model,input]
                                [--workdir /tmp/pirec-folder-bench] [--json]

The folder: ``--pairs`` line-art avatars of the test split (``data=avatars``, the styles with
line art) rendered at ``--size`` px, each as ``N_e.png`` (the artists' line art, black on white, as
a person draws) and ``N_c.png`` (the color domain the model's evaluation settings make from the
picture), written once into ``--workdir/pairs``.

Per ``--run-sizes`` arm (``model``: the default, the networks at the model's size; ``input``: at
the folder's own size), alternating ``--repeats`` times, each figure the median:

- **folder**: ``pirec reconstruct --model M --input-dir pairs --output-dir out --overwrite`` as a
  subprocess with ``OMP_NUM_THREADS=--threads``; images/s from the command's own last line (the
  folder's pairs from the first read to the last write, after the model is loaded) and the
  process's wall time, Python's start and the model's loading included;
- **networks alone**: ``benchmarks/inference.py --model M --size S --batch B --threads T`` (S the
  size the networks run at in that arm), rows (a) bare and (b) ``Reconstructor``, in the same run.

``folder_over_networks`` = (a)'s images/s over the folder's (target <= 1.3: decoding, resizing,
thinning and writing cost less than a third of the networks' time).

On a machine shared with other jobs, wall-clock rates swing with their load; ``--cpu-time``
adds a comparison that hardly does: in this process, with ``--threads`` torch threads, the CPU
seconds (``time.process_time``, all threads, the writer's included) per image of
``reconstruct_folder`` (the code ``pirec reconstruct --input-dir`` runs, the model already
loaded) and of the two networks alone on batches of the same size, alternating ``--repeats``
times; ``cpu_folder_over_networks`` is their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_pairs(folder: Path, count: int, size: int, model: str) -> None:
    """``count`` avatar pairs at ``size`` px in ``folder`` (kept when already complete)."""
    import numpy as np
    from PIL import Image

    from pirec_lightning.data.avatars import LINE_ART_STYLES, AvatarDataset
    from pirec_lightning.inference import Reconstructor
    from pirec_lightning.inference.evaluate import spread_indices

    if len(list(folder.glob("*_c.png"))) >= count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    data = AvatarDataset("test", image_size=size)
    with_lines = [i for i, (style, _) in enumerate(data.items) if style in LINE_ART_STYLES]
    rec = Reconstructor.pretrained(model, "cpu", run_size="input")
    for n, index in enumerate(spread_indices(len(with_lines), count)):
        item = data[with_lines[index]]
        ink = item["line_art"][0].numpy() > 0.5
        Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).save(folder / f"{n}_e.png")
        _, color = rec.photo_inputs(item["image"][None], seed=n)
        array = (color[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{n}_c.png")
        print(f"pair {n + 1} of {count}", file=sys.stderr, flush=True)


def run_folder(args, pairs: Path, out: Path, run_size: str) -> dict[str, float]:
    command = [sys.executable, "-m", "pirec_lightning.cli", "reconstruct", "--model", args.model]
    command += ["--input-dir", str(pairs), "--output-dir", str(out), "--overwrite"]
    command += ["--device", "cpu", "--batch-size", str(args.batch), "--run-size", run_size]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pirec reconstruct failed: {done.stderr.strip().splitlines()[-1]}")
    found = re.search(r"wrote (\d+) images .* in ([\d.]+) s, ([\d.]+) images/s", done.stdout)
    if found is None:
        raise SystemExit(f"no speed in pirec reconstruct's output: {done.stdout!r}")
    images = int(found.group(1))
    return {"images_per_s": images / float(found.group(2)), "wall_s": wall, "images": images}


def run_networks(args, size: int) -> dict[str, float]:
    command = [sys.executable, str(HERE / "inference.py"), "--device", "cpu", "--model", args.model]
    command += ["--size", str(size), "--batch", str(args.batch), "--threads", str(args.threads)]
    command += ["--no-onnx", "--no-compile", "--repeats", "3", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "bare": result[f"bare_images_per_s_batch{args.batch}"],
        "reconstructor": result[f"reconstructor_images_per_s_batch{args.batch}"],
    }


def cpu_seconds(args, pairs: Path, out: Path, run_size: str) -> dict[str, float]:
    """CPU seconds per image of the folder path and of the networks alone (see the module)."""
    import torch

    from pirec_lightning.inference import Reconstructor
    from pirec_lightning.inference.pairs import reconstruct_folder

    torch.set_num_threads(args.threads)
    rec = Reconstructor.pretrained(args.model, "cpu", run_size=run_size)
    count = len(list(pairs.glob("*_c.png")))
    side = rec.run_shape(args.size, args.size)[0]
    generator = torch.Generator().manual_seed(0)
    edge = (torch.rand(args.batch, 1, side, side, generator=generator) > 0.9).float()
    color = torch.rand(args.batch, 3, side, side, generator=generator)
    folder, networks = [], []
    for _ in range(args.repeats):
        start = time.process_time()
        reconstruct_folder(rec, pairs, out, args.batch, device="cpu", overwrite=True)
        folder.append((time.process_time() - start) / count)
        start = time.process_time()
        batches = -(-count // args.batch)
        with torch.inference_mode():
            for _ in range(batches):
                first = rec.generator(torch.cat([color, edge], 1))
                rec.refiner(torch.cat([first, edge], 1))
        networks.append((time.process_time() - start) / (batches * args.batch))
    return {
        "cpu_s_per_image_folder": statistics.median(folder),
        "cpu_s_per_image_networks": statistics.median(networks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sketch-128")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--run-sizes", default="model,input")
    parser.add_argument("--workdir", default="/tmp/pirec-folder-bench")
    parser.add_argument("--cpu-time", action="store_true", help="add the CPU-seconds comparison")
    parser.add_argument("--no-wall", action="store_true", help="skip the wall-clock rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from pirec_lightning.inference.reconstructor import run_shape
    from pirec_lightning.pretrained import model_card

    workdir = Path(args.workdir).expanduser()
    pairs = workdir / f"pairs{args.size}"
    make_pairs(pairs, args.pairs, args.size, args.model)
    model_size = int(json.loads(model_card(args.model)["config"])["data"]["image_size"])
    arms = args.run_sizes.split(",")
    folder_runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    network_runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for _ in range(0 if args.no_wall else args.repeats):
        for arm in arms:
            folder_runs[arm].append(run_folder(args, pairs, workdir / f"out_{arm}", arm))
            network_size = run_shape(args.size, args.size, model_size, arm)[0]
            network_runs[arm].append(run_networks(args, network_size))
    rows = []
    for arm in arms if args.cpu_time else ():
        cpu = cpu_seconds(args, pairs, workdir / f"out_cpu_{arm}", arm)
        ratio = cpu["cpu_s_per_image_folder"] / cpu["cpu_s_per_image_networks"]
        row = {"run_size": arm, "size": args.size, "threads": args.threads, **cpu}
        row["cpu_folder_over_networks"] = ratio
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    for arm in arms if not args.no_wall else ():
        row = {
            "run_size": arm,
            "pairs": folder_runs[arm][0]["images"],
            "size": args.size,
            "network_size": run_shape(args.size, args.size, model_size, arm)[0],
            "threads": args.threads,
            "batch": args.batch,
            "folder_images_per_s": statistics.median(r["images_per_s"] for r in folder_runs[arm]),
            "folder_wall_s": statistics.median(r["wall_s"] for r in folder_runs[arm]),
            "bare_images_per_s": statistics.median(r["bare"] for r in network_runs[arm]),
            "reconstructor_images_per_s": statistics.median(
                r["reconstructor"] for r in network_runs[arm]
            ),
        }
        row["folder_over_networks"] = row["bare_images_per_s"] / row["folder_images_per_s"]
        rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    if args.json:
        print(json.dumps({"rows": rows, "cores": os.cpu_count(), "repeats": args.repeats}))
        return
    for r in [r for r in rows if "cpu_folder_over_networks" in r]:
        print(
            f"CPU s/image, {r['run_size']}: folder {r['cpu_s_per_image_folder']}, networks "
            f"{r['cpu_s_per_image_networks']}, ratio {r['cpu_folder_over_networks']} "
            "(target <= 1.3)"
        )
    rows = [r for r in rows if "folder_images_per_s" in r]
    if not rows:
        return
    print(
        f"{rows[0]['pairs']} pairs of {args.size} px, {args.model}, {args.threads} threads, "
        f"batch {args.batch}, {os.cpu_count()} cores, median of {args.repeats}"
    )
    print(
        "| run size | networks at | folder images/s | folder wall s | (a) bare images/s | "
        "(b) Reconstructor images/s | (a) / folder |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run_size']} | {r['network_size']} px | {r['folder_images_per_s']} | "
            f"{r['folder_wall_s']} | {r['bare_images_per_s']} | "
            f"{r['reconstructor_images_per_s']} | {r['folder_over_networks']} (target <= 1.3) |"
        )


if __name__ == "__main__":
    main()
