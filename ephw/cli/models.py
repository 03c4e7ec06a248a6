"""``ephw models``: the named checkpoints shipped with ephw."""

from __future__ import annotations

import argparse
import json

from ephw.cli.common import print_table
from ephw.pretrained.catalog import describe_models


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the shipped models (usable wherever a checkpoint path is)")
    p.add_argument("--json", action="store_true", help="one JSON object per model, with its training command")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    rows = describe_models()
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print_table(rows, ["name", "kind", "data", "architecture", "test_accuracy", "seed"])
    return 0
