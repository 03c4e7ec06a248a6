"""``ephw settle`` and ``ephw compare``."""

from __future__ import annotations

import argparse
import json

from ephw.backends import get_backend
from ephw.cli import lava_settle
from ephw.cli.common import (
    add_model_data_options,
    add_settle_options,
    backend_options,
    load_model_and_data,
    parse_backends,
    print_table,
    with_settle_dtype,
)
from ephw.compare import compare_backends
from ephw.inference import settle_dataset

SETTLE_COLUMNS = [
    "backend",
    "n",
    "accuracy",
    "steps_mean",
    "steps_max",
    "converged_fraction",
    "seconds",
    "image_steps_per_second",
]
COMPARE_COLUMNS = [
    "backend",
    "accuracy",
    "steps_mean",
    "seconds",
    "max_abs_state_diff",
    "mean_abs_state_diff",
    "prediction_agreement",
    "samples_differing",
]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settle", help="settle test images on one backend (or all) and report accuracy/convergence")
    p.add_argument("--backend", default="euler", help="backend name, or 'all'")
    p.add_argument(
        "--report",
        action="store_true",
        help="also print the hardware resources (neurons, synapses, Loihi 2 cores) of backends that map the model; "
        "lava backends: messages, synaptic ops and the Loihi time/energy estimate per image beside the CPU's",
    )
    p.add_argument(
        "--delta-threshold",
        type=float,
        default=None,
        help="lava backends: sigma-delta messaging, a neuron sends only when its state moved more than T (0: exact)",
    )
    p.add_argument(
        "--student",
        default=None,
        help="with --report: feed-forward student timed beside the Loihi estimate (digits default: digits-distilled)",
    )
    add_model_data_options(p, low_precision=True)
    add_settle_options(p)
    p.set_defaults(func=run_settle)

    p = sub.add_parser("compare", help="settle the same images on several backends and compare the fixed points")
    p.add_argument("--backends", default="all", help="comma-separated backend names (first = reference), or 'all'")
    add_model_data_options(p, low_precision=True)
    add_settle_options(p)
    p.set_defaults(func=run_compare)


def run_settle(args: argparse.Namespace) -> int:
    backends = parse_backends(args.backend)
    options = backend_options(args, backends)
    with_settle_dtype(args, options, backends)
    lava_settle.add_delta_threshold(args.delta_threshold, backends, options)
    net, data = load_model_and_data(args)
    rows = []
    reports = []
    loihi = []
    for name in backends:
        impl = get_backend(name, **options.get(name, {})) if args.report else None
        counted = impl is not None and hasattr(impl, "loihi_estimate")
        if counted:
            impl.activity_log = []
        run = settle_dataset(
            net,
            data,
            impl if counted else name,
            steps=args.steps,
            tol=args.tol,
            batch_size=args.batch,
            progress=args.progress,
            **({} if counted else options.get(name, {})),
        )
        row = {**run.summary(), "class_counts": data.class_counts()}
        if impl is not None and hasattr(impl, "resources"):
            row["resources"] = impl.resources(net)
            reports.append((name, row["resources"]))
        if counted:
            row["loihi"] = lava_settle.report(impl, net, data, run, args)
            loihi.append((name, row["loihi"]))
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows, SETTLE_COLUMNS)
        for name, res in reports:
            lim = res["limits"]
            print(
                f"{name}: {res['neurons']} neurons, {res['synapses']} synapses ({res['weights']} weights), "
                f"{res['neuro_cores']} Loihi 2 neuro-cores on {res['chips']} chip(s) "
                f"[<= {lim['neurons_per_core']} neurons and <= {lim['synapses_per_core']} synapses per core, "
                f"{lim['cores_per_chip']} cores per chip: {lim['source']}]"
            )
        for name, rep in loihi:
            print("\n".join(lava_settle.format_report(name, rep)))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    backends = parse_backends(args.backends)
    options = backend_options(args, backends)
    with_settle_dtype(args, options, backends)
    net, data = load_model_and_data(args)
    report, _ = compare_backends(
        net,
        data,
        backends,
        steps=args.steps,
        tol=args.tol,
        batch_size=args.batch,
        options=options,
        progress=args.progress,
    )
    report["class_counts"] = data.class_counts()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"reference: {report['reference']}  ({data.name}, n={len(data)})")
        print_table(report["rows"], COMPARE_COLUMNS)
    return 0
