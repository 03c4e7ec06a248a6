"""``ephw bench train``: one EP training batch, ephw's converged phases vs the fixed-step reference.

The reference is Laborieux et al.'s recipe: synchronous ``s <- sigma(dPhi/ds)`` with the drive
from autograd (NCHW model), ``free_steps`` free steps (250) and ``nudge_steps`` (30) for each of
the ``+beta`` / ``-beta`` phases from the free state, then the symmetric EP gradient and an SGD
update. ephw's batch runs :func:`ephw.training.ep.ep_step` with a solver and ``tol`` (each phase
stops per sample once converged) and the same gradient and update. Both are timed interleaved
in one run; the gradients are compared (cosine) on the samples whose three phases converged
in both.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ephw.backends.base import max_abs_change
from ephw.bench.settle_bench import bench_context, model_and_images, plain_layout
from ephw.timing import time_interleaved
from ephw.model import EnergyModel, States
from ephw.training import ep_gradient, ep_step


def reference_phase(
    net: EnergyModel, x: Tensor, states: States, steps: int, beta: float, target: Tensor | None
) -> tuple[States, Tensor]:
    """``steps`` autograd-driven synchronous steps; returns the states and the last residual ``(B,)``."""
    r = x.new_full((x.shape[0],), float("inf"))
    for _ in range(steps):
        with torch.enable_grad():
            leaves = [s.detach().requires_grad_() for s in states]
            grads = torch.autograd.grad(net.phi(x, leaves, beta, target).sum(), leaves)
        new = [net.activation(g) for g in grads]
        r = max_abs_change(new, states)
        states = new
    return states, r


def _sgd(net: EnergyModel, grads: list[Tensor], lr: float) -> None:
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads):
            p.sub_(lr * g)


def bench_train(
    config: str = "cpu-small",
    batch: int = 128,
    *,
    solver: str = "sor",
    tol: float = 1e-4,
    max_steps: int = 2000,
    beta: float = 0.5,
    free_steps: int = 250,
    nudge_steps: int = 30,
    lr: float = 0.01,
    repeats: int = 1,
    device: str = "cpu",
    model: str | None = None,
) -> dict[str, Any]:
    """Seconds of one EP batch (three phases + update) for ephw's ``solver`` to ``tol`` and the reference.

    Returns the two times and their ratio, steps per phase, converged fractions (the reference's
    "converged" = its last-step residual below ``tol``), and the cosine of the two EP gradients
    (all parameters, and the worst layer) over the samples converged in all six phases, and over
    all samples (``gradient_cosine_all_samples``: whatever the reference's phases reached).
    ``model``: a trained checkpoint instead of the randomly initialised ``config`` (where the
    reference's 250/30 steps can converge, so that "both converged" has samples).
    """
    dev = torch.device(device)
    net, x, source = model_and_images(config, batch, dev, model)
    config = net.config.name if model is not None else config  # what was run, for the report
    target = torch.arange(batch, device=dev) % net.config.classes  # fixed labels: timing only needs some
    plain = plain_layout(net)
    x_plain = x.contiguous()

    def fast() -> tuple[Any, list[Tensor]]:
        step = ep_step(net, x, target, backend=solver, beta=beta, free_steps=max_steps, nudge_steps=max_steps, tol=tol)
        _sgd(copy.deepcopy(net), step.grads, lr)
        return step, step.grads

    def reference() -> tuple[States, States, Tensor, list[Tensor]]:
        zeros = [s.contiguous() for s in plain.zeros(x_plain)]
        free, r_free = reference_phase(plain, x_plain, zeros, free_steps, 0.0, None)
        plus, r_plus = reference_phase(plain, x_plain, free, nudge_steps, beta, target)
        minus, r_minus = reference_phase(plain, x_plain, free, nudge_steps, -beta, target)
        grads = ep_gradient(plain, x_plain, target, plus, minus, beta)
        _sgd(copy.deepcopy(plain), grads, lr)
        ok = (r_free < tol) & (r_plus < tol) & (r_minus < tol)
        return plus, minus, ok, grads

    step, _ = fast()  # warm-up; its results are the ones compared
    ref_plus, ref_minus, ref_ok, ref_grads = reference()
    flat_all = [torch.cat([g.flatten() for g in gs]) for gs in (step.grads, ref_grads)]
    cos_every = float(F.cosine_similarity(flat_all[0], flat_all[1], dim=0))
    times = time_interleaved({"ephw": fast, "reference": reference}, repeats=repeats, warmup=0, device=dev)
    ok = ref_ok & step.free.converged.to(dev) & step.plus.converged.to(dev) & step.minus.converged.to(dev)
    cos_all = cos_worst = None
    if bool(ok.any()):
        g_fast = ep_gradient(
            net, x[ok], target[ok], [s[ok] for s in step.plus.states], [s[ok] for s in step.minus.states], beta
        )
        g_ref = ep_gradient(net, x[ok], target[ok], [s[ok] for s in ref_plus], [s[ok] for s in ref_minus], beta)
        flat = [torch.cat([g.flatten() for g in gs]) for gs in (g_fast, g_ref)]
        cos_all = float(F.cosine_similarity(flat[0], flat[1], dim=0))
        cos_worst = min(
            float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0)) for a, b in zip(g_fast, g_ref) if b.norm() > 0
        )
    return {
        **bench_context(config, batch, dev, source),
        "solver": solver,
        "tol": tol,
        "beta": beta,
        "reference_steps": [free_steps, nudge_steps, nudge_steps],
        "ephw_steps_mean": [float(r.steps_per_sample.float().mean()) for r in (step.free, step.plus, step.minus)],
        "ephw_converged_fraction": min(r.converged_fraction for r in (step.free, step.plus, step.minus)),
        "reference_converged_fraction": float(ref_ok.float().mean()),
        "seconds_ephw": times["ephw"],
        "seconds_reference": times["reference"],
        "speedup": times["reference"] / times["ephw"],
        "gradient_samples": int(ok.sum()),
        "gradient_cosine": cos_all,
        "gradient_cosine_worst_parameter": cos_worst,
        "gradient_cosine_all_samples": cos_every,
    }
