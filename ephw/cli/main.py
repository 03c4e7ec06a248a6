"""Entry point of the ``ephw`` command."""

from __future__ import annotations

import argparse
import sys

from ephw import __version__
from ephw.cli import bench, distill, robustness, settle, sweep, train
from ephw.device import resolve_device
from ephw.errors import EphwError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ephw",
        description="Energy-based (EP) networks settled on simulated hardware backends.",
    )
    parser.add_argument("--version", action="version", version=f"ephw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    settle.add_parsers(sub)
    train.add_parsers(sub)
    bench.add_parsers(sub)
    sweep.add_parsers(sub)
    distill.add_parsers(sub)
    robustness.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            resolve_device(args.device)
        return args.func(args)
    except EphwError as exc:
        print(f"ephw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ephw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
