"""``ephw models``: the named checkpoints shipped with ephw."""

from __future__ import annotations

import argparse
import json
import sys

from ephw.cli.common import print_table
from ephw.pretrained import catalog


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the shipped models (usable wherever a checkpoint path is)")
    p.add_argument("--json", action="store_true", help="one JSON object per model, with its training command")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    skipped: list[str] = []
    rows = catalog.describe_models(skipped)
    if skipped:  # one line for all of them: the listing itself is still right
        where = catalog.PRETRAINED_DIR
        print(f"ephw: warning: skipped unreadable files in {where}: {'; '.join(skipped)}", file=sys.stderr)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print_table(rows, ["name", "kind", "data", "architecture", "test_accuracy", "seed"])
    return 0
