"""Entry point of the ``ephw`` command."""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import sys

from ephw import __version__, distributed
from ephw.cli import backends, bench, distill, models, reproduce, robustness, settle, sweep, train
from ephw.device import resolve_device
from ephw.errors import EphwError
from ephw.signals import Terminated, install


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
    models.add_parsers(sub)
    backends.add_parsers(sub)
    reproduce.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if distributed.env_rank() > 0:  # under torchrun rank 0 alone reports a bad command line (every rank has it)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    else:
        args = build_parser().parse_args(argv)
    args.runner = main  # a command that runs other ephw commands (reproduce) runs them in this process
    previous = signal.getsignal(signal.SIGTERM)
    install()  # SIGTERM: the same clean shutdown as Ctrl-C
    finished = False
    try:
        distributed.setup(args)  # under torchrun: join the process group, one device per rank
        if getattr(args, "device", None) is not None:
            resolve_device(args.device)
        code = args.func(args)
        finished = code == 0
        return code
    except EphwError as exc:
        if not distributed.quiet_error(exc):
            print(f"ephw: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("ephw: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("ephw: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.teardown(finished)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
