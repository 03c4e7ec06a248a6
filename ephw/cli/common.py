"""Options shared by several ``ephw`` subcommands, and their interpretation."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

import torch

from ephw.backends import DEFAULT_STEPS, DEFAULT_TOL, backend_names
from ephw.checkpoint import BUNDLED_MODEL, load_checkpoint
from ephw.data import ImageSet, load_dataset
from ephw.errors import InputError
from ephw.model import EnergyModel

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: ``--dtype`` values of ``settle``/``compare`` that keep an fp32 model and settle in mixed precision
LOW_SETTLE_DTYPES = ("bfloat16", "float16")


def add_model_data_options(p: argparse.ArgumentParser, low_precision: bool = False) -> None:
    """``--model/--data/--n/--batch/--device/--dtype``; ``low_precision`` adds ``--dtype bfloat16|float16``."""
    p.add_argument("--model", default=None, help=f"checkpoint to settle (default: bundled {BUNDLED_MODEL.name})")
    p.add_argument("--data", default=None, help="digits|cifar10|cifar100 (default: the model's training data)")
    p.add_argument("--data-root", default=None, help="folder or .tar.gz holding the dataset (see docs/data.md)")
    p.add_argument(
        "--n",
        type=int,
        default=512,
        help="number of test images (a class-balanced subset: the first n of the stratified test order)",
    )
    p.add_argument("--batch", type=positive_int, default=256, help="images settled at once")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    if low_precision:
        p.add_argument(
            "--dtype",
            default="float32",
            choices=sorted(DTYPES) + list(LOW_SETTLE_DTYPES),
            help="model precision; bfloat16/float16: iterate in that precision, polish in float32 to --tol "
            "(reported states meet --tol in float32; docs/solvers.md)",
        )
    else:
        p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))


def add_settle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="maximal steps per batch")
    p.add_argument("--tol", type=positive_float, default=DEFAULT_TOL, help="stop when max|ds| < tol for every sample")
    add_backend_option_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--progress",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (else a one-line usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (``inf`` would stop after one step as "converged")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_backend_option_flags(p: argparse.ArgumentParser) -> None:
    """``--set BACKEND.KEY=VALUE`` and the crossbar flags (read by :func:`backend_options`)."""
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="BACKEND.KEY=VALUE",
        help="backend option, e.g. euler.dt=0.5 or crossbar.reprogram_every=10 (repeatable; VALUE parsed as JSON)",
    )
    g = p.add_argument_group("crossbar backend")
    g.add_argument("--crossbar-preset", default=None, help="ideal, pcm, rram-wan2022 or rram-illustrative")
    g.add_argument("--crossbar-file", default=None, help="TOML/JSON file of crossbar parameters (over the preset)")
    g.add_argument(
        "--crossbar-set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="crossbar parameter override, e.g. read_noise.proportional=0.02 (repeatable)",
    )


def parse_backends(spec: str) -> list[str]:
    names = backend_names() if spec == "all" else [b.strip() for b in spec.split(",") if b.strip()]
    unknown = [b for b in names if b not in backend_names()]
    if unknown or not names:
        raise InputError(
            f"unknown backend {', '.join(unknown) or spec!r}; valid backends: {', '.join(backend_names())}, all"
        )
    return names


def backend_options(args: argparse.Namespace, used: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per-backend constructor options from ``--set`` and the backend-specific flags.

    With ``used`` (the backends this command runs), an option for any other backend -- a
    ``--set async.dt=0.5`` next to ``--backend euler``, a ``--crossbar-*`` flag without the
    crossbar backend -- is an :class:`InputError` instead of being silently ignored.
    """
    out = parse_options(args.options)
    crossbar: dict[str, Any] = {}
    if args.crossbar_preset is not None:
        crossbar["preset"] = args.crossbar_preset
    if args.crossbar_file is not None:
        crossbar["file"] = args.crossbar_file
    if args.crossbar_set:
        crossbar["overrides"] = list(args.crossbar_set)
    if crossbar:
        out.setdefault("crossbar", {}).update(crossbar)
    if used is not None:
        unused = [name for name in out if name not in used]
        if unused:
            flags = [
                *(item for item in args.options if item.partition(".")[0] in unused),
                *(["--crossbar-* flags"] if "crossbar" in unused and crossbar else []),
            ]
            raise InputError(
                f"{', '.join(flags)}: options for backend {', '.join(unused)}, which this command does not run "
                f"(it runs {', '.join(used)})"
            )
    return out


def with_settle_dtype(args: argparse.Namespace, options: dict[str, dict[str, Any]], used: Sequence[str]) -> None:
    """Add ``dtype=`` (a low ``--dtype``) to the options of every backend in ``used``, in place.

    An explicit ``--set NAME.dtype=...`` wins for that backend.
    """
    if getattr(args, "dtype", None) in LOW_SETTLE_DTYPES:
        for name in used:
            options.setdefault(name, {}).setdefault("dtype", args.dtype)


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["euler.dt=0.5"]`` -> ``{"euler": {"dt": 0.5}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        backend, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise InputError(f"--set expects BACKEND.KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(backend, {})[name] = value
    return out


def load_model_and_data(args: argparse.Namespace) -> tuple[EnergyModel, ImageSet]:
    """The model (``--model`` or the bundled one) and ``--n`` test images of its dataset."""
    ckpt = load_checkpoint(args.model or BUNDLED_MODEL)
    net = ckpt.model(DTYPES.get(args.dtype, torch.float32), args.device)  # low --dtype: an fp32 model
    name = args.data or ckpt.meta.get("data", "digits")
    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    data = load_dataset(name, "test", args.data_root)
    if data.image_shape != tuple(net.config.in_shape):
        raise InputError(
            f"{name} images have shape {data.image_shape} but the model expects {tuple(net.config.in_shape)}"
        )
    return net, data.subset(args.n)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
