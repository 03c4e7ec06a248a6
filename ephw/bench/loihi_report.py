"""``ephw settle --backend lava --report``: activity, the Loihi estimate and the CPU baselines.

Per settled image: messages, synaptic operations, timesteps and neuron updates counted on
the lava network; the Loihi time and energy estimated from them (:mod:`ephw.lava.loihi_cost`);
beside it the CPU's measured time per image for the same images -- the lava simulation
itself, ``euler`` (the digital settle), and the distilled feed-forward student's forward
pass (measured here, with its multiply-accumulates counted).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ephw.data import ImageSet
from ephw.feedforward.checkpoint import load_feedforward
from ephw.inference import settle_dataset
from ephw.lava.activity import Activity
from ephw.model import EnergyModel


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on one image shaped like ``x[0]``."""
    macs = 0

    def hook(mod: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.weight[0].numel()  # C_in/groups * kh * kw
            macs += int(out[0].numel()) * k
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return macs


def student_cpu_cost(path: str | Path, data: ImageSet, batch: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Measured CPU seconds per image of a feed-forward student on ``data`` (best of ``repeats`` after
    one untimed warm-up pass), its accuracy and MACs per image."""
    model, _ = load_feedforward(path)
    model.eval()
    x, y = data.batch(slice(0, len(data)))
    best = float("inf")
    with torch.no_grad():
        model(x[:batch])  # warm-up: first-call allocations are not the model's cost
        for _ in range(repeats):
            start = time.perf_counter()
            logits = torch.cat([model(x[lo : lo + batch]) for lo in range(0, len(x), batch)])
            best = min(best, time.perf_counter() - start)
    return {
        "student": str(path),
        "seconds_per_image": best / len(x),
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "macs_per_image": count_macs(model, x),
        "threads": torch.get_num_threads(),
    }


def euler_cpu_seconds(net: EnergyModel, data: ImageSet, *, steps: int, tol: float | None, batch: int) -> dict:
    """Measured CPU seconds per image of the digital ``euler`` settle of ``data`` and its mean steps."""
    run = settle_dataset(net, data, "euler", steps=steps, tol=tol, batch_size=batch)
    return {"seconds_per_image": run.seconds / run.n, "steps_mean": float(run.steps_per_sample.float().mean())}


def loihi_report(
    backend, net: EnergyModel, lava_seconds: float, n: int, euler: dict, student: dict | None
) -> dict[str, Any]:
    """Activity, decay and Loihi estimate of every settle ``backend`` recorded, with the CPU baselines."""
    activity = Activity.concat(backend.activity_log)
    est = backend.loihi_estimate(net, activity)
    return {
        "delta_threshold": activity.delta_threshold,
        "per_image": activity.per_image(),
        "decay": activity.decay(),
        "loihi_estimate": est.as_dict(),
        "cpu_lava_seconds_per_image": lava_seconds / n,
        "cpu_euler": euler,
        "cpu_student": student,
    }


def format_loihi_report(name: str, rep: dict[str, Any]) -> list[str]:
    """Human-readable lines of :func:`loihi_report`."""
    est, per = rep["loihi_estimate"], rep["per_image"]
    thr = rep["delta_threshold"]
    lines = [
        f"{name}: per image {per['messages']:.0f} messages, {per['synops']:.0f} synaptic ops, "
        f"{per['timesteps']:.1f} timesteps, {per['neuron_updates']:.0f} neuron updates "
        f"({'dense messaging' if thr is None else f'delta threshold {thr:g}'})",
        "  activity over the settle (mean per image): "
        + ", ".join(f"t={d['timestep']}: {d['messages']:.0f} msg / {d['synops']:.0f} synops" for d in rep["decay"]),
        f"  Loihi ESTIMATE per image: {est['seconds_per_image'] * 1e6:.1f} us "
        f"(<= {est['seconds_per_image_loihi2_bound'] * 1e6:.1f} us with Loihi 2's 'up to 10x'), "
        f"{est['joules_per_image'] * 1e6:.3f} uJ on {est['cores']} neuro-cores",
        f"  CPU measured per image: lava simulation {rep['cpu_lava_seconds_per_image'] * 1e3:.2f} ms, "
        f"euler {rep['cpu_euler']['seconds_per_image'] * 1e3:.3f} ms ({rep['cpu_euler']['steps_mean']:.1f} steps)",
    ]
    st = rep["cpu_student"]
    if st is not None:
        lines.append(
            f"  distilled student on the CPU: {st['seconds_per_image'] * 1e6:.1f} us per image, "
            f"{st['macs_per_image']} MACs, accuracy {st['accuracy']:.4f} ({st['student']})"
        )
    lines.append("  figures (estimate; Loihi per-op figures, see docs/lava.md):")
    lines += [f"    {k}: {v}" for k, v in est["figures"].items()]
    return lines


__all__ = ["count_macs", "euler_cpu_seconds", "format_loihi_report", "loihi_report", "student_cpu_cost"]
