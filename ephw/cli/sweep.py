"""``ephw sweep``."""

from __future__ import annotations

import argparse
import json

from ephw.cli.common import (
    add_model_data_options,
    add_settle_options,
    backend_options,
    load_model_and_data,
    parse_backends,
    positive_int,
    print_table,
)
from ephw.crossbar.deploy import sweep_from_args
from ephw.errors import InputError
from ephw.outputs import file_output_lock
from ephw.sweep import plot_sweep, run_sweep


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _mean_ci(cell: dict) -> str:
    """``mean ± ci95``; just the mean where one seed gives no interval."""
    ci = cell["ci95"]
    return f"{cell['mean']:.4g}" + ("" if ci is None else f" ± {ci:.2g}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="accuracy and fixed-point deviation vs one backend parameter, over seeds")
    p.add_argument("--backend", default="crossbar")
    p.add_argument(
        "--param", required=True, help="crossbar: SECTION.FIELD (e.g. read_noise.proportional); else an option"
    )
    p.add_argument("--values", required=True, help="comma-separated values")
    p.add_argument("--seeds", type=positive_int, default=1, help="chips (programming + read-noise seeds) per value")
    p.add_argument("--plot", default=None, metavar="PNG", help="save a figure")
    add_model_data_options(p)
    add_settle_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    backends = parse_backends(args.backend)
    if len(backends) != 1:
        raise InputError(f"sweep runs one backend, got {', '.join(backends)}")
    (backend,) = backends
    values = [_value(v.strip()) for v in args.values.split(",") if v.strip()]
    if not values:
        raise InputError(f"--values needs at least one value (comma-separated), got {args.values!r}")
    options = backend_options(args, [backend]).get(backend, {})
    with file_output_lock(args.plot):  # checked before the sweep, not after it; one sweep per figure
        report = sweep_from_args(args, backend, values, options)  # a feed-forward --model: deployed on chips
        if report is None:
            net, data = load_model_and_data(args)
            report = run_sweep(
                net,
                data,
                backend,
                args.param,
                values,
                seeds=args.seeds,
                steps=args.steps,
                tol=args.tol,
                batch_size=args.batch,
                options=options,
            )
        if args.plot:
            plot_sweep(report, args.plot)
    if args.json:
        print(json.dumps(report))
    else:
        rows = [
            {
                "value": r["value"],
                **{m: _mean_ci(r[m]) for m in ("accuracy", "agreement", "mean_abs_state_diff")},
            }
            for r in report["rows"]
        ]
        print(f"{backend}: {args.param}; reference {report['reference']} accuracy {report['reference_accuracy']:.4f}")
        print_table(rows, ["value", "accuracy", "agreement", "mean_abs_state_diff"])
    return 0
