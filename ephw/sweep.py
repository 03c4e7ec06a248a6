"""Parameter sweeps: accuracy and fixed-point deviation from the digital reference vs a parameter.

For the crossbar backend the swept parameter is any field of its parameter
dataclasses (``section.field``); every value is run on ``seeds`` chips (a new
programming draw and read-noise stream each), and the report gives the mean and the
95 % Student-t confidence interval over chips. For other backends the parameter is a
constructor option (e.g. ``euler`` ``dt``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ephw.backends import get_backend
from ephw.compare import mean_abs_difference, sample_differences
from ephw.data import ImageSet
from ephw.inference import settle_dataset
from ephw.model import EnergyModel
from ephw.outputs import save_figure
from ephw.stats import mean_ci

METRICS = ("accuracy", "agreement", "mean_abs_state_diff", "max_abs_state_diff", "converged_fraction", "steps_mean")


#: Short names for the crossbar parameters swept most often (``--param read_noise``).
CROSSBAR_ALIASES = {
    "read_noise": "read_noise.proportional",
    "programming_noise": "programming_noise.rel",
    "drift_time": "drift.t_seconds",
    "levels": "conductance.levels_bits",
}


def _backend_options(backend: str, param: str, value: Any, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    if backend == "crossbar":
        param = CROSSBAR_ALIASES.get(param, param)
        overrides = [
            *options.get("overrides", []),
            f"{param}={value}",
            f"chip_seed={seed}",
            f"read_seed={seed + 10_000}",
        ]
        return {**options, "overrides": overrides}
    return {**options, param: value}


def run_sweep(
    net: EnergyModel,
    data: ImageSet,
    backend: str,
    param: str,
    values: Sequence[Any],
    *,
    seeds: int = 1,
    steps: int,
    tol: float | None,
    batch_size: int = 256,
    options: dict[str, Any] | None = None,
    reference: str = "euler",
) -> dict[str, Any]:
    """Settle ``data`` for every ``value`` x seed; compare with the ``reference`` backend's fixed points."""
    options = options or {}
    ref = settle_dataset(net, data, reference, steps=steps, tol=tol, batch_size=batch_size, keep_states=True)
    rows = []
    for value in values:
        per_seed: dict[str, list[float]] = {m: [] for m in METRICS}
        for seed in range(seeds):
            impl = get_backend(backend, **_backend_options(backend, param, value, seed, options))
            run = settle_dataset(net, data, impl, steps=steps, tol=tol, batch_size=batch_size, keep_states=True)
            diff = sample_differences(run.states, ref.states)
            summary = run.summary()
            per_seed["accuracy"].append(run.accuracy)
            per_seed["agreement"].append(float((run.predictions == ref.predictions).float().mean()))
            per_seed["mean_abs_state_diff"].append(mean_abs_difference(run.states, ref.states))
            per_seed["max_abs_state_diff"].append(float(diff.max()))
            per_seed["converged_fraction"].append(summary["converged_fraction"] or 0.0)
            per_seed["steps_mean"].append(summary["steps_mean"])
        row: dict[str, Any] = {"value": value, "seeds": seeds}
        for metric, vals in per_seed.items():
            mean, half = mean_ci(vals)
            row[metric] = {"mean": mean, "ci95": None if math.isnan(half) else half, "values": vals}
        rows.append(row)
    return {
        "backend": backend,
        "param": param,
        "reference": reference,
        "reference_accuracy": ref.accuracy,
        "n": ref.n,
        "rows": rows,
    }


def plot_sweep(report: dict[str, Any], path: str) -> None:
    """Accuracy and state deviation vs the parameter, mean and 95 % CI band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["value"] for r in report["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in (
        (axes[0], "accuracy", "test accuracy"),
        (axes[1], "mean_abs_state_diff", f"mean |s − s_{report['reference']}|"),
    ):
        mean = [r[metric]["mean"] for r in report["rows"]]
        half = [r[metric]["ci95"] or 0.0 for r in report["rows"]]
        ax.plot(xs, mean, "o-", label=report["backend"])
        ax.fill_between(xs, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)], alpha=0.25)
        ax.set(xlabel=report["param"], ylabel=label)
    axes[0].axhline(report["reference_accuracy"], color="k", ls=":", lw=1, label=report["reference"])
    axes[0].legend()
    seeds = report["rows"][0]["seeds"] if report["rows"] else 0
    fig.suptitle(
        f"{report['backend']}: sweep of {report['param']} (n={report['n']}, mean ± 95 % CI over {seeds} seeds)"
    )
    fig.tight_layout()
    save_figure(path, fig, dpi=120)
    plt.close(fig)
