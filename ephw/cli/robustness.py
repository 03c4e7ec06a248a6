"""``ephw robustness run`` and ``ephw robustness report``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ephw.cli.common import DTYPES
from ephw.errors import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="adversarial / corruption robustness runs and their reports")
    kinds = p.add_subparsers(dest="robustness_command", metavar="ACTION", required=True)

    r = kinds.add_parser("run", help="models x attacks x eps x seeds -> one JSON line per result (resumable)")
    r.add_argument("--config", required=True, help="TOML file (see examples/robustness_digits.toml)")
    r.add_argument("--out", default=None, help="results file (default runs/robustness/CONFIG-STEM.jsonl)")
    r.add_argument(
        "--grad",
        default=None,
        help="override every EP model's gradient mode: bptt:K, bptt:K:fixed, implicit[:MAX_ITER], intermediate:K, bpda",
    )
    r.add_argument("--limit", type=int, default=None, help="compute at most this many rows, then stop")
    r.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="compute shard K (0-based) of N into RESULTS.shard-K-of-N.jsonl (independent jobs, e.g. SLURM arrays; "
        "under torchrun each rank is a shard by itself)",
    )
    r.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: the config's [run] device)")
    r.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run_cmd)

    q = kinds.add_parser("report", help="markdown table, paper-style figures and the obfuscation checklist")
    q.add_argument("results", help="results file of `ephw robustness run`")
    q.add_argument("--out", default=None, help="report folder (default: RESULTS without .jsonl, + '-report')")
    q.add_argument(
        "--config",
        default=None,
        help="the run's TOML: worst cases whose planned attacks have not all run are shown as upper bounds",
    )
    q.add_argument("--device", default=None, help="accepted like every command's; a report computes nothing on it")
    q.set_defaults(func=report_cmd)


def run_cmd(args: argparse.Namespace) -> int:
    from ephw.robustness.config import load_config
    from ephw.robustness.gradients import parse_grads
    from ephw.robustness.runner import run_robustness
    from ephw.robustness.shards import parse_shard

    cfg = load_config(args.config)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.device is not None:
        cfg = dataclasses.replace(cfg, device=args.device)
    if args.grad is not None:
        parse_grads(args.grad)
        cfg = dataclasses.replace(cfg, models=tuple(dataclasses.replace(m, grad=args.grad) for m in cfg.models))
    out = Path(args.out) if args.out else Path("runs/robustness") / (Path(args.config).stem + ".jsonl")
    shard = parse_shard(args.shard) if args.shard is not None else None
    summary = run_robustness(
        cfg, out, progress=not args.no_progress, limit=args.limit, dtype=DTYPES[args.dtype], shard=shard
    )
    print(
        json.dumps(
            {
                "results": str(summary.results),
                "checklist": str(summary.checklist),
                "rows": summary.total,
                "skipped": summary.skipped,
                "computed": summary.computed,
            }
        )
    )
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from ephw.robustness.report import write_report

    results = Path(args.results)
    out = Path(args.out) if args.out else results.with_name(results.name.removesuffix(".jsonl") + "-report")
    pending = None
    if args.config is not None:
        from ephw.robustness import shards
        from ephw.robustness.config import load_config
        from ephw.robustness.runner import dedupe, pending_attacks, read_rows

        rows, _ = dedupe(shards.read_all(results, read_rows))
        pending = pending_attacks(load_config(args.config), rows)
    files = write_report(results, out, pending=pending)
    print(json.dumps({k: str(v) for k, v in files.items()}))
    return 0
