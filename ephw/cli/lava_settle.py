"""The lava parts of ``ephw settle``: ``--delta-threshold`` and the Loihi estimate of ``--report``."""

from __future__ import annotations

import argparse
from typing import Any

from ephw.data import ImageSet
from ephw.errors import InputError
from ephw.bench.loihi_report import euler_cpu_seconds, format_loihi_report, loihi_report, student_cpu_cost
from ephw.model import EnergyModel

LAVA_BACKENDS = ("lava", "lava-fixed")


def add_delta_threshold(threshold: float | None, backends: list[str], options: dict[str, dict]) -> None:
    """Give ``--delta-threshold`` to the lava backends among ``backends`` (an error if there are none)."""
    if threshold is None:
        return
    lava = [b for b in backends if b in LAVA_BACKENDS]
    if not lava:
        raise InputError(
            f"--delta-threshold applies to the lava backends only (this command runs {', '.join(backends)})"
        )
    for name in lava:
        options.setdefault(name, {})["delta_threshold"] = threshold


def report(impl, net: EnergyModel, data: ImageSet, run, args: argparse.Namespace) -> dict[str, Any]:
    """Activity and Loihi estimate of the settles ``impl`` recorded, the euler and student CPU baselines."""
    euler = euler_cpu_seconds(net, data, steps=args.steps, tol=args.tol, batch=args.batch)
    student = args.student or ("digits-distilled" if data.name == "digits" else None)
    cost = None
    if student is not None:
        from ephw.pretrained.catalog import resolve_model

        cost = student_cpu_cost(resolve_model(student), data, batch=args.batch)
    return loihi_report(impl, net, run.seconds, run.n, euler, cost)


format_report = format_loihi_report
