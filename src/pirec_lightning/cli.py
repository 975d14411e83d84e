"""The ``pirec`` command line. ``pirec train [overrides]`` runs the same training as
``python train.py``; later subcommands (reconstruct, evaluate, export) plug in here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pirec_lightning import __version__


def _train(overrides: list[str]) -> int:
    from pirec_lightning.train import main as train_main

    # Hydra reads sys.argv: hand it exactly the overrides
    sys.argv = ["pirec train", *overrides]
    train_main()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pirec", description="PI-REC: progressive image reconstruction from edges and color."
    )
    parser.add_argument("--version", action="version", version=f"pirec-lightning {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train", help="train a phase; takes Hydra overrides, e.g. phase=imitation debug=tiny"
    )
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        # everything after `train` is Hydra's (-m, --cfg job, --help, overrides): argparse's
        # REMAINDER rejects a leading flag, so hand it over untouched
        return _train(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args.overrides)
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
