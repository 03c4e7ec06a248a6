"""``ephw bench settle``, ``train``, ``warmstart`` and ``students``."""

from __future__ import annotations

import argparse
import json

from ephw.bench.recipes import RECIPES, curve_of_run, get_recipe, plot_curves, time_recipes, write_curves
from ephw.bench.settle_bench import SOLVERS, bench_backend_steps, bench_settle
from ephw.bench.students import bench_students
from ephw.bench.tables import report_table
from ephw.bench.train_bench import bench_train
from ephw.bench.warmstart import DISTILLED_STUDENT, bench_warmstart
from ephw.cli.common import add_backend_option_flags, backend_options, parse_backends, print_table
from ephw.errors import InputError
from ephw.model import CONFIG_NAMES
from ephw.outputs import atomic_write

ROW_COLUMNS = [
    "solver",
    "steps_mean",
    "steps_max",
    "converged_fraction",
    "seconds",
    "over_reference",
    "over_euler",
    "over_async",
    "samples_differing",
    "max_abs_diff_same_basin",
]


def check_counts(args: argparse.Namespace, *names: str) -> None:
    """One-line errors for non-positive ``--batch``/``--repeats``/``--n``-like options."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


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
    p.add_argument("--solvers", default=",".join(SOLVERS), help="solvers timed to tol (comma-separated backends)")
    p.add_argument("--dtypes", default="bfloat16", help="also time each solver in these low precisions ('' for none)")
    p.add_argument("--reference-steps", type=int, default=250, help="fixed steps of the autograd reference")
    p.add_argument(
        "--settle-repeats", type=int, default=1, help="timed settles per solver after a warm-up (0: time the one run)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    add_backend_option_flags(p)
    p.set_defaults(func=run_bench_settle)
    add_train_parser(kinds)
    add_warmstart_parser(kinds)
    add_students_parser(kinds)
    add_recipe_parsers(kinds)
    p = kinds.add_parser("table", help="markdown tables (ratios only) from bench --json reports")
    p.add_argument("reports", nargs="+", metavar="REPORT.json", help="files of one JSON report each")
    p.set_defaults(func=run_bench_table)


def run_bench_table(args: argparse.Namespace) -> int:
    for i, path in enumerate(args.reports):
        try:
            with open(path) as f:
                report = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, json.JSONDecodeError, IndexError) as exc:
            raise InputError(f"{path}: not a bench --json report ({exc})") from None
        print(("\n" if i else "") + report_table(report))
    return 0


def add_train_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser("train", help="one EP batch: converged phases with a solver vs the 250/30-step reference")
    p.add_argument("--config", default="cpu-small", choices=CONFIG_NAMES)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--solver", default="sor", help="backend for ephw's three phases")
    p.add_argument("--model", default=None, help="a trained EP checkpoint instead of the randomly initialised --config")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--free-steps", type=int, default=250, help="reference free-phase steps")
    p.add_argument("--nudge-steps", type=int, default=30, help="reference steps of each nudged phase")
    p.add_argument("--repeats", type=int, default=1, help="timed batches of each after a warm-up (median)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_bench_train)


def run_bench_train(args: argparse.Namespace) -> int:
    check_counts(args, "batch", "repeats", "max_steps", "free_steps", "nudge_steps")
    r = bench_train(
        args.config,
        args.batch,
        solver=args.solver,
        tol=args.tol,
        max_steps=args.max_steps,
        beta=args.beta,
        free_steps=args.free_steps,
        nudge_steps=args.nudge_steps,
        repeats=args.repeats,
        device=args.device,
        model=args.model,
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"config {r['config']}, batch {r['batch']}, {r['device']} ({r['threads']} threads); {r['model']}")
    steps = " / ".join(f"{v:.1f}" for v in r["ephw_steps_mean"])
    print(
        f"ephw ({r['solver']}, tol {r['tol']:g}): {r['seconds_ephw']:.2f} s, steps free/+beta/-beta {steps},"
        f" converged {r['ephw_converged_fraction']:.3f}"
    )
    print(
        f"reference ({'/'.join(map(str, r['reference_steps']))} autograd steps): {r['seconds_reference']:.2f} s,"
        f" converged to tol {r['reference_converged_fraction']:.3f}"
    )
    cos = "-" if r["gradient_cosine"] is None else f"{r['gradient_cosine']:.5f}"
    worst = "-" if r["gradient_cosine_worst_parameter"] is None else f"{r['gradient_cosine_worst_parameter']:.5f}"
    print(
        f"speedup {r['speedup']:.2f}x; EP gradient cosine {cos} (worst parameter {worst})"
        f" on the {r['gradient_samples']} samples converged in both"
    )
    return 0


def add_warmstart_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser("warmstart", help="steps to tol from the null state vs from a distilled student's states")
    p.add_argument(
        "--student",
        default=str(DISTILLED_STUDENT),
        help="feed-forward checkpoint of a cnn / cnn-ll student (default: the bundled distilled digits student)",
    )
    p.add_argument("--model", default=None, help="EP checkpoint (default: the student's teacher)")
    p.add_argument("--backend", default=None, help="settling backend (default: the student's teacher backend)")
    p.add_argument("--n", type=int, default=256, help="test images (first n)")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings of both settles (median reported)")
    p.add_argument(
        "--noise",
        default="",
        metavar="EPS[,EPS...]",
        help="also settle from the cold fixed point + uniform noise of these amplitudes (how good must an init be?)",
    )
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    add_backend_option_flags(p)
    p.set_defaults(func=run_bench_warmstart)


def run_bench_warmstart(args: argparse.Namespace) -> int:
    check_counts(args, "n", "repeats", "max_steps")
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
        noise=tuple(float(v) for v in args.noise.split(",") if v.strip()),
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
        f" (incl. the student's pass) | ratio {r['warm_over_cold_seconds']:.3f}"
    )
    print(
        f"fixed points   max abs diff {r['max_abs_state_diff']:.2e}, samples differing {r['samples_differing']},"
        f" prediction agreement {r['prediction_agreement']:.4f}"
        f" (student init was {r['student_init_mean_abs_diff']:.3g} mean abs from the fixed point,"
        f" median per-image max {r['student_init_sample_max_abs_diff_median']:.3g})"
    )
    for p in r["noise_probe"]:
        print(
            f"from the fixed point + U(+-{p['eps']:g}): steps {p['steps_mean']:.1f}"
            f" (ratio {p['over_cold_steps']:.3f}), samples differing {p['samples_differing']}"
        )
    return 0


def add_students_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "students", help="every distilled student of a run folder vs its teacher's settle, timed in one run"
    )
    p.add_argument("--run-dir", required=True, help="a folder of step folders (e.g. reproduce/cifar10)")
    p.add_argument("--batch", type=int, default=256, help="test images per timed call (the first ones)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds after a warm-up (median reported)")
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_bench_students)


#: ``ephw bench students`` columns a student of a feed-forward teacher has no value in (nothing settles).
_TIMED_COLUMNS = ("teacher_steps", "student_us_per_image", "teacher_us_per_image", "speedup", "rounds_min_max")


def run_bench_students(args: argparse.Namespace) -> int:
    check_counts(args, "batch", "repeats")
    r = bench_students(
        args.run_dir, batch=args.batch, repeats=args.repeats, data_root=args.data_root, device=args.device
    )
    if args.out:
        atomic_write(args.out, json.dumps(r, indent=1, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"batch {r['batch']}, {r['repeats']} rounds, {r['device']} ({r['threads']} threads)")
    rows = [
        {
            "student": name,
            "teacher_backend": row["teacher_backend"],
            "teacher_steps": f"{row['teacher_steps_mean']:.1f}",
            "student_us_per_image": f"{row['student_seconds_per_image'] * 1e6:.1f}",
            "teacher_us_per_image": f"{row['teacher_seconds_per_image'] * 1e6:.1f}",
            "speedup": f"{row['speedup']:.1f}",
            "rounds_min_max": "{:.1f}-{:.1f}".format(*row["speedup_rounds"]),
        }
        if row["speedup"] is not None
        else {"student": name, "teacher_backend": row["teacher_backend"], **dict.fromkeys(_TIMED_COLUMNS, "–")}
        for name, row in r["students"].items()
    ]
    print_table(rows, list(rows[0]))
    return 0


def run_bench_settle(args: argparse.Namespace) -> int:
    check_counts(args, "batch", "repeats", "max_steps", "reference_steps")
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
    solvers = tuple(parse_backends(args.solvers))
    r = bench_settle(
        args.config,
        args.batch,
        repeats=args.repeats,
        tol=args.tol,
        max_steps=args.max_steps,
        device=args.device,
        solvers=solvers,
        dtypes=tuple(d.strip() for d in args.dtypes.split(",") if d.strip()),
        reference_steps=args.reference_steps,
        settle_repeats=args.settle_repeats,
        options=backend_options(args, used=solvers),
    )
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"config {r['config']}, batch {r['batch']}, {r['device']} ({r['threads']} threads); {r['model']}")
    print(
        f"step time   ephw euler {r['step_seconds_ephw'] * 1e3:.1f} ms"
        f" | async sweep {r['step_seconds_async_sweep'] * 1e3:.1f} ms ({r['async_sweep_over_euler_step']:.2f}x)"
        f" | autograd reference {r['step_seconds_autograd'] * 1e3:.1f} ms"
        f" | autograd, ephw layout {r['step_seconds_autograd_same_layout'] * 1e3:.1f} ms"
    )
    print(
        f"settle loop overhead over the bare step: euler {100 * r['settle_overhead_euler']:+.1f} %,"
        f" async {100 * r['settle_overhead_async']:+.1f} %"
        f" | speedup {r['speedup_vs_autograd']:.2f}x vs autograd (max drive difference {r['max_abs_drive_diff']:.2e})"
    )
    print(
        f"time to tol={r['tol']:g} from the null state; reference = {r['reference_steps']} autograd steps"
        f" = {r['reference_seconds']:.2f} s; basins vs async differ above {r['differ_above']:g}"
    )
    print_table(r["rows"], ROW_COLUMNS)
    return 0


def add_recipe_parsers(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "curves", help="time-to-accuracy: test accuracy vs image-sweeps and train time of EP run folders"
    )
    p.add_argument("runs", nargs="+", metavar="RUN[=LABEL]", help="ephw train ep run folders (metrics.jsonl)")
    p.add_argument("--target", type=float, default=None, help="accuracy (fraction) to report the cost of reaching")
    p.add_argument("--json", dest="json_out", default=None, help="write the curves as JSON here")
    p.add_argument("--plot", default=None, help="write the figure here (PNG)")
    p.set_defaults(func=run_bench_curves)
    p = kinds.add_parser("recipes", help="seconds per EP training batch of named recipes, timed side by side")
    p.add_argument("--recipes", required=True, help=f"comma-separated: {', '.join(RECIPES)}")
    p.add_argument("--batches", type=int, default=5, help="consecutive batches per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    p.set_defaults(func=run_bench_recipes)


def run_bench_curves(args: argparse.Namespace) -> int:
    curves = []
    for spec in args.runs:
        run, _, label = spec.partition("=")
        curves.append(curve_of_run(run, label or None))
    if args.json_out:
        write_curves(curves, args.json_out)
    if args.plot:
        plot_curves(curves, args.plot, args.target)
    rows = []
    for c in curves:
        last = c.points[-1] if c.points else None
        hit = c.first_reaching(args.target) if args.target is not None else None
        rows.append(
            {
                "run": c.label,
                "epochs": len(c.points),
                "final_accuracy": f"{100 * last.test_accuracy:.2f}" if last else "-",
                "image_sweeps": f"{last.image_sweeps:.3g}" if last else "-",
                "reached_target_at_epoch": hit.epoch if hit else "-",
                "image_sweeps_to_target": f"{hit.image_sweeps:.3g}" if hit else "-",
                "train_hours_to_target": f"{hit.train_seconds / 3600:.2f}" if hit and hit.train_seconds else "-",
            }
        )
    print_table(rows, list(rows[0]))
    return 0


def run_bench_recipes(args: argparse.Namespace) -> int:
    check_counts(args, "batches", "repeats")
    recipes = [get_recipe(n.strip()) for n in args.recipes.split(",") if n.strip()]
    r = time_recipes(recipes, batches=args.batches, repeats=args.repeats, data_root=args.data_root)
    if args.out:
        atomic_write(args.out, json.dumps(r, indent=1, sort_keys=True) + "\n")
    print(json.dumps(r))
    return 0
