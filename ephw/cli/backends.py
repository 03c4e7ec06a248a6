"""``ephw backends``: the registered backends, built-in and from plugins (``ephw.backends`` entry points)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ephw.backends import backend_info
from ephw.cli.common import print_table

COLUMNS = ["name", "origin", "nudging", "version", "description"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backends",
        help="list the settling backends: built-in and from installed plugins (entry-point group ephw.backends)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per backend")
    p.set_defaults(func=run_backends)


def run_backends(args: argparse.Namespace) -> int:
    """Print name, origin (``built-in`` or the plugin's distribution), nudged-phase support and version."""
    rows = [dataclasses.asdict(info) for info in backend_info()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print_table([{**r, "nudging": "yes" if r["nudging"] else "free only"} for r in rows], COLUMNS)
    return 0
