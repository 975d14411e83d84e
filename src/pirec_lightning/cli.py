"""The ``pirec`` command line: ``pirec train | reconstruct | evaluate | export``.

Each subcommand is a pair of small functions: ``add_<name>(commands)`` declares its arguments
and ``run_<name>(args)`` does the work with lazy imports (``pirec --help`` stays fast). To add a
subcommand, write the pair and list it in :data:`SUBCOMMANDS`. A user mistake (a ``ValueError``,
including :class:`~pirec_lightning.config.ConfigError`, or a missing file) prints one line
``error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pirec_lightning import __version__

EXAMPLES = "examples:\n  "


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
    from pirec_lightning.train import main as train_main

    # Hydra reads sys.argv: hand it exactly the overrides
    sys.argv = ["pirec train", *args.overrides]
    train_main()
    return 0


# ------------------------------------------------------------------------------------ reconstruct
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint | --pirec-generator [--pirec-refiner], --device (shared by subcommands)."""
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a generating or refinement checkpoint (.ckpt)")
    model.add_argument("--pirec-generator", help="original PI-REC G_Model_gen_*.pth")
    parser.add_argument("--pirec-refiner", help="original PI-REC R_Model_gen_*.pth (refinement)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


def load_reconstructor(args: argparse.Namespace):
    from pirec_lightning.inference import Reconstructor

    if args.checkpoint is not None:
        if args.pirec_refiner is not None:
            raise ValueError("--pirec-refiner goes with --pirec-generator, not --checkpoint")
        return Reconstructor.from_checkpoint(args.checkpoint, device=args.device)
    return Reconstructor.from_pirec(args.pirec_generator, args.pirec_refiner, device=args.device)


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
    parser.add_argument("--batch-size", type=int, default=8, help="folder mode batch size")
    for flag, kind in (("--sigma", float), ("--median-kernel", int), ("--k", int)):
        parser.add_argument(flag, type=kind, help="photo mode: override the evaluation value")
    parser.add_argument("--second-median-kernel", type=int, help="photo mode override")
    parser.set_defaults(run=run_reconstruct)


def run_reconstruct(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.input_dir is not None:
        if args.output_dir is None:
            raise ValueError("--input-dir needs --output-dir")
        from pirec_lightning.pairs import reconstruct_folder

        model = load_reconstructor(args)
        if args.no_refine:
            model.refiner = None
        written = reconstruct_folder(
            model, args.input_dir, args.output_dir, args.batch_size, args.edge_polarity, args.device
        )
        print(f"wrote {len(written)} images to {args.output_dir}")
        return 0
    if args.output is None:
        raise ValueError("give the output image with -o/--output")
    if args.edge is not None and args.color is None:
        raise ValueError("--edge needs --color (the color-domain image)")
    model = load_reconstructor(args)
    refine = not args.no_refine
    if args.photo is not None:
        images = model.from_photo(
            args.photo, args.sigma, args.median_kernel, args.k, args.second_median_kernel,
            refine=refine, output_type="pil",
        )  # fmt: skip
    else:
        images = model.reconstruct(
            args.edge, args.color, refine, output_type="pil", edge_polarity=args.edge_polarity
        )
    Path(args.output).expanduser().parent.mkdir(parents=True, exist_ok=True)
    images[0].save(Path(args.output).expanduser())
    print(f"wrote {args.output}")
    return 0


#: every subcommand, in the order of ``pirec --help``
SUBCOMMANDS: list[Callable[..., None]] = [add_train, add_reconstruct]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pirec", description="PI-REC: progressive image reconstruction from edges and color."
    )
    parser.add_argument("--version", action="version", version=f"pirec-lightning {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
