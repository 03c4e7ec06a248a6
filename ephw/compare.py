"""Settling the same images on several backends and comparing their fixed points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ephw.data import ImageSet
from ephw.inference import DatasetSettle, settle_dataset
from ephw.model import EnergyModel


def layer_differences(states: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> list[float]:
    """``max |s - s_ref|`` per layer."""
    return [float((a - b).abs().max()) for a, b in zip(states, reference)]


def mean_abs_difference(states: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> float:
    """Mean of ``|s - s_ref|`` over all units of all layers and samples."""
    total = sum(float((a - b).abs().sum()) for a, b in zip(states, reference))
    return total / sum(a.numel() for a in states)


def sample_differences(states: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> torch.Tensor:
    """``max |s - s_ref|`` per sample over all layers, ``(n,)``."""
    return torch.stack([(a - b).abs().flatten(1).amax(1) for a, b in zip(states, reference)]).amax(0)


def compare_backends(
    net: EnergyModel,
    data: ImageSet,
    backends: Sequence[str],
    *,
    steps: int,
    tol: float | None,
    batch_size: int = 256,
    options: dict[str, dict[str, Any]] | None = None,
    differ_above: float = 1e-4,
    progress: bool | None = False,
) -> tuple[dict[str, Any], list[DatasetSettle]]:
    """Settle ``data`` on each backend; compare each to the first.

    Returns the report ``{"reference": name, "rows": [...]}`` (one row per backend
    with ``backend, accuracy, steps_mean, seconds, max_abs_state_diff,
    prediction_agreement, layer_max_abs_diff`` and ``samples_differing``, the number of
    images whose states differ by more than ``differ_above`` -- with a multistable model
    these are the images that settled into another basin) and the raw per-backend results.
    """
    options = options or {}
    runs = [
        settle_dataset(
            net,
            data,
            b,
            steps=steps,
            tol=tol,
            batch_size=batch_size,
            keep_states=True,
            progress=progress,
            **options.get(b, {}),
        )
        for b in backends
    ]
    ref = runs[0]
    rows = []
    for run in runs:
        diffs = layer_differences(run.states, ref.states)
        summary = run.summary()
        rows.append(
            {
                "backend": run.backend,
                "n": run.n,
                "accuracy": summary["accuracy"],
                "steps_mean": summary["steps_mean"],
                "converged_fraction": summary["converged_fraction"],
                "seconds": summary["seconds"],
                "max_abs_state_diff": max(diffs),
                "mean_abs_state_diff": mean_abs_difference(run.states, ref.states),
                "prediction_agreement": float((run.predictions == ref.predictions).float().mean()),
                "layer_max_abs_diff": diffs,
                "samples_differing": int((sample_differences(run.states, ref.states) > differ_above).sum()),
            }
        )
    return {"reference": ref.backend, "rows": rows}, runs
