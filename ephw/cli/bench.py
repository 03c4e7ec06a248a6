"""``ephw bench settle`` and ``ephw bench warmstart``."""

from __future__ import annotations

import argparse
import json

from ephw.bench.settle_bench import bench_backend_steps, bench_settle
from ephw.bench.warmstart import bench_warmstart
from ephw.cli.common import add_backend_option_flags, backend_options, parse_backends, print_table
from ephw.model import CONFIG_NAMES


def add_parsers(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (speed as ratios measured in one run)")
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    p = kinds.add_parser("settle", help="ephw settle step vs naive autograd step; euler vs async steps to tol")
    p.add_argument(
        "--backends",
        default=None,
        help="instead: time each backend's step against the first's, e.g. euler,crossbar (bundled model by default)",
    )
    p.add_argument("--config", default=None, choices=CONFIG_NAMES, help="default: paper; digits with --backends")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per step kind (median reported)")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    add_backend_option_flags(p)
    p.set_defaults(func=run_bench_settle)
    add_warmstart_parser(kinds)


def add_warmstart_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser("warmstart", help="steps to tol from the null state vs from a distilled student's states")
    p.add_argument("--student", required=True, help="feed-forward checkpoint of a cnn / cnn-ll student")
    p.add_argument("--model", default=None, help="EP checkpoint (default: the student's teacher)")
    p.add_argument("--backend", default=None, help="settling backend (default: the student's teacher backend)")
    p.add_argument("--n", type=int, default=256, help="test images (first n)")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings of both settles (median reported)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    add_backend_option_flags(p)
    p.set_defaults(func=run_bench_warmstart)


def run_bench_warmstart(args: argparse.Namespace) -> int:
    r = bench_warmstart(
        args.student,
        args.model,
        args.backend,
        backend_options(args),
        n=args.n,
        steps=args.max_steps,
        tol=args.tol,
        repeats=args.repeats,
        data_root=args.data_root,
        device=args.device,
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['backend']} on {r['n']} {r['data']} test images, tol {r['tol']:g}; teacher {r['teacher']}")
    print(
        f"steps to tol   null state {r['cold_steps_mean']:.1f} (max {r['cold_steps_max']})"
        f" | student init {r['warm_steps_mean']:.1f} (max {r['warm_steps_max']})"
        f" | ratio {r['warm_over_cold_steps']:.3f}"
    )
    print(
        f"settle time    null state {r['cold_seconds'] * 1e3:.1f} ms | student init {r['warm_seconds'] * 1e3:.1f} ms"
        " (incl. the student's pass)"
    )
    print(
        f"fixed points   max abs diff {r['max_abs_state_diff']:.2e}, samples differing {r['samples_differing']},"
        f" prediction agreement {r['prediction_agreement']:.4f}"
        f" (student init was {r['student_init_mean_abs_diff']:.3g} mean abs from the fixed point)"
    )
    return 0


def run_bench_settle(args: argparse.Namespace) -> int:
    if args.backends:
        r = bench_backend_steps(
            parse_backends(args.backends),
            args.config or "digits",
            args.batch,
            repeats=args.repeats,
            device=args.device,
            options=backend_options(args),
        )
        if args.json:
            print(json.dumps(r))
        else:
            print(f"config {r['config']}, batch {r['batch']}, {r['device']} ({r['threads']} threads); {r['model']}")
            print_table(r["rows"], ["backend", "step_ms", "ratio_to_reference"])
        return 0
    args.config = args.config or "paper"
    r = bench_settle(
        args.config, args.batch, repeats=args.repeats, tol=args.tol, max_steps=args.max_steps, device=args.device
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"config {r['config']}, batch {r['batch']}, {r['device']} ({r['threads']} threads); {r['model']}")
    print(
        f"step time   ephw {r['step_seconds_ephw'] * 1e3:.1f} ms"
        f" | autograd reference {r['step_seconds_autograd'] * 1e3:.1f} ms"
        f" | autograd, ephw layout {r['step_seconds_autograd_same_layout'] * 1e3:.1f} ms"
    )
    print(
        f"speedup     {r['speedup_vs_autograd']:.2f}x vs autograd reference,"
        f" {r['speedup_vs_autograd_same_layout']:.2f}x vs autograd in ephw's layout"
        f" (max drive difference {r['max_abs_drive_diff']:.2e})"
    )
    print(
        f"steps to tol={r['tol']:g}  euler {r['euler_steps_mean']:.1f} | async {r['async_steps_mean']:.1f}"
        f" | ratio async/euler {r['async_over_euler_steps']:.3f}"
        f" (converged: euler {r['euler_converged_fraction']:.3f}, async {r['async_converged_fraction']:.3f})"
    )
    return 0
