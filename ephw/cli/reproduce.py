"""``ephw reproduce DATA``: the seed paper's experiment, stage by stage (docs/reproduce.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ephw.errors import ConfigError
from ephw.reproduce.plan import BUDGETS, STAGES


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="the paper's experiment end to end: train EP, baselines, students; attack them; write the results page",
    )
    p.add_argument("data", choices=("cifar10", "cifar100"), help="dataset")
    p.add_argument(
        "--stage",
        action="append",
        default=None,
        help=f"run only this stage (repeatable): {', '.join(STAGES)} (default: all, in order)",
    )
    p.add_argument("--budget", default="cpu", help=f"sizes: {', '.join(BUDGETS)} (default cpu; docs/reproduce.md)")
    p.add_argument("--data-root", default=None, help="folder or .tar.gz holding the dataset")
    p.add_argument("--run-dir", default=None, help="where every run goes (default reproduce/DATA[-BUDGET])")
    p.add_argument("--docs", default="docs/results", help="folder of the results page DATA.md (default docs/results)")
    p.add_argument(
        "--no-ship", action="store_true", help="do not copy finished models into the package (ephw/pretrained)"
    )
    p.add_argument("--list", action="store_true", help="print the plan (every command) and what is done, run nothing")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="robustness stage: compute only shard K (0-based) of N of its rows, beside the results file "
        "(shards of one run can go side by side; the EP-CNN's rows are the costliest shard)",
    )
    p.add_argument(
        "--part",
        action="append",
        default=None,
        metavar="NAME",
        help="robustness stage: run only this part of the budget's grid (repeatable; e.g. black-box; "
        "default every part, in order)",
    )
    p.add_argument(
        "--step",
        action="append",
        default=None,
        metavar="NAME",
        help="training stages: run only this step (repeatable; names as --list prints them, e.g. "
        "distilled-ll-s1); done steps still get their provenance stamp",
    )
    p.add_argument(
        "--first",
        action="append",
        default=None,
        metavar="MODEL",
        help="robustness stage: run this model's rows before the others' (repeatable, in order; names as on the "
        "results page, e.g. 'BP-CNN [s2]')",
    )
    p.set_defaults(func=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    from ephw.reproduce.pipeline import Pipeline, print_status
    from ephw.reproduce.robustness import row_status
    from ephw.robustness.shards import parse_shard

    if args.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {args.budget!r}: use one of {', '.join(BUDGETS)}")
    stages = args.stage or list(STAGES)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"unknown stage {bad[0]!r}: use one of {', '.join(STAGES)}")
    default_dir = f"reproduce/{args.data}" + ("" if args.budget == "cpu" else f"-{args.budget}")
    pipe = Pipeline(
        args.data,
        args.budget,
        Path(args.run_dir or default_dir),
        data_root=args.data_root,
        ship_dir=None if args.no_ship or args.budget == "smoke" else Pipeline.default_ship_dir(),
        device=args.device,
        docs_dir=Path(args.docs),
        shard=parse_shard(args.shard) if args.shard is not None else None,
        parts=args.part,
        only_steps=args.step,
        first=args.first,
        runner=args.runner,
    )
    if args.list:
        for step in pipe.steps:
            state = (
                "done" if pipe.is_done(step) else "resume" if (pipe.folder(step) / "checkpoint.pt").is_file() else "-"
            )
            print(f"{step.stage:10s} {step.name:26s} {state:7s} ephw {' '.join(pipe.command(step))}")
        students, untimed = pipe.timing_status()
        if students:
            left = f"; to time: {', '.join(untimed)}" if untimed else ""
            print(f"timing     {len(students) - len(untimed)}/{len(students)} students timed in one run{left}")
        if any(pipe.is_done(step) for step in pipe.steps):  # rows are planned over trained models only
            for line in row_status(pipe):
                print(line)
        return 0
    pipe.check_runnable(stages)
    with pipe.lock(stages):
        statuses = pipe.run(stages)
    print_status(statuses)
    return 1 if any(s.status in ("failed", "stopped") for s in statuses) else 0
