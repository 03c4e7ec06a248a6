"""``ephw bench warmstart``: settling from a distilled student's states instead of the null state.

The student (an EP-topology CNN distilled with Eq. 8) predicts every hidden state in one
feed-forward pass; handed to ``ephw.settle(..., init=...)`` it should leave the teacher
fewer steps to its fixed point. This measures the steps to ``tol`` from both starts on the
same images and backend instance, and whether both reach the same fixed point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ephw.backends import get_backend, settle
from ephw.timing import time_interleaved
from ephw.checkpoint import BUNDLED_DIR, load_checkpoint
from ephw.compare import layer_differences, mean_abs_difference, sample_differences
from ephw.data import load_dataset
from ephw.distill.teacher import recorded_teacher_path
from ephw.errors import InputError
from ephw.feedforward import EPTopologyCNN, load_feedforward

#: ``ephw distill --student cnn`` of the bundled digits model (20 epochs, cached teacher states)
DISTILLED_STUDENT = BUNDLED_DIR / "digits-distilled.pt"


def bench_warmstart(
    student_path: str | Path = DISTILLED_STUDENT,
    teacher_path: str | Path | None = None,
    backend: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    *,
    n: int = 256,
    steps: int = 500,
    tol: float = 1e-6,
    differ_above: float | None = None,
    repeats: int = 3,
    data_root: str | None = None,
    device: str = "cpu",
    noise: tuple[float, ...] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Steps to ``tol`` from the null state vs from the student's states, on ``n`` test images.

    Args:
        student_path: a feed-forward checkpoint of an EP-topology student (``cnn``/``cnn-ll``).
        teacher_path: the EP checkpoint (default: the student's recorded teacher, else the bundled model).
        backend: the settling backend (default: the backend the student was distilled from).
        options: per-backend constructor options ``{name: {...}}``; when none are given for the
            backend the student was distilled from, its recorded options are used.
        differ_above: a sample "differs" when its two fixed points are further apart (max abs) than
            this (default ``max(1e-4, 100 tol)``: two settles to ``tol`` of one fixed point agree
            within ~30 tol, docs/distillation.md).
        repeats: interleaved timings of the two settles (the warm one includes the student's pass).
        noise: amplitudes ``eps`` of a probe of how good an init must be: the settle restarts from
            the cold fixed point plus uniform noise in ``[-eps, eps]`` per unit (clamped to
            ``[0, 1]``, generator ``seed``); its steps, step ratio to the cold start and samples
            differing are reported per ``eps`` (``noise_probe``).

    Returns:
        steps (mean, max) and converged fraction from each start, the step ratio, the max / mean
        abs difference of the two fixed points per layer and overall, the samples differing, the
        prediction agreement, the accuracy of both, the student's own distance to the fixed point
        (overall, and the median over images of each image's max abs error), the step ratio over
        the images that stay in the cold start's basin, and the seconds of each settle.
    """
    student, meta = load_feedforward(student_path, device=device)
    if not isinstance(student, EPTopologyCNN):
        raise InputError(f"{student_path}: a warm start needs an EP-topology student (cnn, cnn-ll), not a ResNet")
    teacher_meta = meta.get("teacher", {})
    teacher_path = teacher_path or recorded_teacher_path(teacher_meta.get("path"))
    ckpt = load_checkpoint(teacher_path)
    net = ckpt.model(device=device)
    if student.spec.config.state_shapes() != net.config.state_shapes():
        raise InputError(
            f"student states {student.spec.config.state_shapes()} do not match the teacher's "
            f"{net.config.state_shapes()} ({teacher_path})"
        )
    backend = backend or teacher_meta.get("backend", "async")
    opts = (options or {}).get(backend) or {}
    if not opts and backend == teacher_meta.get("backend"):
        opts = teacher_meta.get("backend_options", {})
    impl = get_backend(backend, **opts)  # one instance (one chip) for both starts
    data_name = meta.get("data") or ckpt.meta.get("data", "digits")
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    x, labels = load_dataset(data_name, "test", data_root).subset(n).batch(slice(None))
    x = x.to(device)

    init = student.settle_init(x)
    cold = settle(net, x, impl, steps, tol)
    warm = settle(net, x, impl, steps, tol, init=init)
    times = time_interleaved(
        {
            "cold": lambda: settle(net, x, impl, steps, tol),
            "warm": lambda: settle(net, x, impl, steps, tol, init=student.settle_init(x)),
        },
        repeats=repeats,
        device=torch.device(device),
    )
    diffs = layer_differences(warm.states, cold.states)
    differ_above = max(1e-4, 100 * tol) if differ_above is None else differ_above
    cold_steps = cold.steps_per_sample.float()
    warm_steps = warm.steps_per_sample.float()
    same = (sample_differences(warm.states, cold.states) <= differ_above).cpu()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    probe = []
    for eps in noise:
        start = [
            (s + eps * (2 * torch.rand(s.shape, generator=gen, device=s.device, dtype=s.dtype) - 1)).clamp(0, 1)
            for s in cold.states
        ]
        r = settle(net, x, impl, steps, tol, init=start)
        probe.append(
            {
                "eps": eps,
                "steps_mean": float(r.steps_per_sample.float().mean()),
                "over_cold_steps": float(r.steps_per_sample.float().mean() / cold_steps.mean()),
                "samples_differing": int((sample_differences(r.states, cold.states) > differ_above).sum()),
            }
        )
    labels = labels.to(cold.predictions.device)
    return {
        "student": str(student_path),
        "teacher": str(teacher_path),
        "backend": impl.name,
        "backend_options": opts,
        "data": data_name,
        "n": int(x.shape[0]),
        "tol": tol,
        "max_steps": steps,
        "cold_steps_mean": float(cold_steps.mean()),
        "warm_steps_mean": float(warm_steps.mean()),
        "cold_steps_max": int(cold_steps.max()),
        "warm_steps_max": int(warm_steps.max()),
        "warm_over_cold_steps": float(warm_steps.mean() / cold_steps.mean()),
        "cold_converged_fraction": cold.converged_fraction,
        "warm_converged_fraction": warm.converged_fraction,
        "cold_seconds": times["cold"],
        "warm_seconds": times["warm"],
        "warm_over_cold_seconds": times["warm"] / times["cold"],
        "max_abs_state_diff": max(diffs),
        "mean_abs_state_diff": mean_abs_difference(warm.states, cold.states),
        "layer_max_abs_diff": diffs,
        "differ_above": differ_above,
        "samples_differing": int((sample_differences(warm.states, cold.states) > differ_above).sum()),
        "prediction_agreement": float((warm.predictions == cold.predictions).float().mean()),
        "cold_accuracy": float((cold.predictions == labels).float().mean()),
        "warm_accuracy": float((warm.predictions == labels).float().mean()),
        "student_init_max_abs_diff": max(layer_differences(init, cold.states)),
        "student_init_mean_abs_diff": mean_abs_difference(init, cold.states),
        "student_init_sample_max_abs_diff_median": float(sample_differences(init, cold.states).median()),
        "warm_over_cold_steps_same_basin": float(warm_steps[same].mean() / cold_steps[same].mean())
        if bool(same.any())
        else None,
        "noise_probe": probe,
    }
