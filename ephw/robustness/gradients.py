"""Input gradients of a settled energy model: the ``--grad`` modes of the EP classifier.

Prediction always uses the full settle; a gradient mode only decides what the *backward*
pass computes. Every mode returns states ``s_grad`` whose forward value is (numerically)
the fixed point ``s*`` and whose graph to the images ``x`` is the mode's surrogate;
:class:`~ephw.robustness.models.EPClassifier` then splices them in straight-through, so the
logits it returns are exactly the settled ones. With ``F(s, x)`` one update of the dynamics
and ``J = dF/ds`` at ``s*``:

* ``bptt:K`` -- back-propagation through ``K`` updates unrolled from the null state
  (LANL's setting: K = 29 or 70 while predicting with 250 steps). The gradient of the
  K-step truncated network, which equals the gradient of the settled network only when
  K steps already converge.
* ``bptt:K:fixed`` -- ``K`` updates re-run from the detached fixed point. Since ``s*`` is a
  fixed point the value does not move, and the gradient is the K-term Neumann series
  ``sum_{k<K} (dl/ds) J^k dF/dx`` of the implicit gradient below.
* ``implicit`` -- the implicit-function gradient ``(dl/ds) (I - J)^{-1} dF/dx``: the adjoint
  ``v = (I - J)^{-T} dl/ds`` is found by the fixed-point iteration ``v <- dl/ds + J^T v``
  (vector-Jacobian products by autograd through one update at ``s*``).
* ``intermediate:K`` -- the intermediate-state attack of Yang, Pang & Liu (2022): BPTT through
  ``K`` updates from the null state, with the loss on the *mean of the readouts* of the
  states after ``K/4, K/2, 3K/4`` and ``K`` updates, so the gradient also follows the
  trajectory (for implicit models whose early iterates are more vulnerable than the
  fixed point's truncated gradient suggests).
* ``bpda`` -- straight-through surrogate: one bottom-up sweep ``s^n <- sigma(dPhi/ds^n)``,
  n = 1..N, at the fixed point (each layer sees the freshly updated layer below and the
  fixed-point layer above). Its gradient is the feed-forward path through the layers with
  the top-down feedback held constant. (A synchronous step would not do: there ``x``
  reaches only ``s^1``, so the gradient of a deeper readout would be exactly zero.)

The update ``F`` is the backend's own rule (``async``: the even/odd sweep; ``euler`` and
``crossbar``: the Euler step) evaluated with the model's exact (digital) synapses: the
white-box attacker knows the programmed weights, and differentiating through simulated
read noise or converter quantisation would obfuscate the gradient, not measure robustness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ephw.backends import Backend, Euler, IterativeBackend
from ephw.errors import ConfigError
from ephw.model import EnergyModel, States

GRAD_KINDS = ("bptt", "implicit", "bpda", "intermediate")

#: ``StepFn(x, states) -> states``: one differentiable update of the dynamics.
StepFn = Callable[[Tensor, Sequence[Tensor]], States]


@dataclass(frozen=True)
class GradMode:
    """How the EP classifier's backward pass is computed.

    Attributes:
        kind: ``"bptt"``, ``"implicit"`` or ``"bpda"``.
        k: unrolled updates (``bptt`` only).
        start: ``"zero"`` (unroll from the null state) or ``"fixed"`` (from the detached
            fixed point); ``bptt`` only.
        max_iter: adjoint fixed-point iterations at most (``implicit`` only).
        tol: the adjoint iteration stops once ``max |v_new - v| <= tol * max |v|``.
    """

    kind: str = "bptt"
    k: int = 29
    start: str = "zero"
    max_iter: int = 500
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in GRAD_KINDS:
            raise ConfigError(f"unknown gradient mode {self.kind!r}; valid: {', '.join(GRAD_KINDS)}")
        if self.kind in ("bptt", "intermediate") and self.k < 1:
            raise ConfigError(f"bptt needs K >= 1 unrolled steps, got {self.k}")
        if self.start not in ("zero", "fixed"):
            raise ConfigError(f"bptt start must be 'zero' or 'fixed', got {self.start!r}")
        if self.max_iter < 1 or not self.tol > 0:
            raise ConfigError(f"implicit needs max_iter >= 1 and tol > 0, got {self.max_iter}, {self.tol}")

    @property
    def label(self) -> str:
        """The ``--grad`` spelling, e.g. ``bptt:29``, ``bptt:29:fixed``, ``implicit``, ``bpda``."""
        if self.kind == "bptt":
            return f"bptt:{self.k}" + (":fixed" if self.start == "fixed" else "")
        if self.kind == "intermediate":
            return f"intermediate:{self.k}"
        return self.kind


def parse_grad(spec: str) -> GradMode:
    """``"bptt:29"``, ``"bptt:70:fixed"``, ``"implicit"``, ``"implicit:1000"`` or ``"bpda"`` -> :class:`GradMode`."""
    parts = str(spec).strip().split(":")
    kind = parts[0]
    try:
        if kind == "bptt" and len(parts) in (2, 3):
            start = parts[2] if len(parts) == 3 else "zero"
            return GradMode("bptt", k=int(parts[1]), start=start)
        if kind == "implicit" and len(parts) <= 2:
            return GradMode("implicit", max_iter=int(parts[1])) if len(parts) == 2 else GradMode("implicit")
        if kind == "intermediate" and len(parts) == 2:
            return GradMode("intermediate", k=int(parts[1]))
        if kind == "bpda" and len(parts) == 1:
            return GradMode("bpda")
    except ValueError:
        pass
    raise ConfigError(
        f"invalid --grad {spec!r}; expected bptt:K, bptt:K:fixed, implicit[:MAX_ITER], intermediate:K or bpda"
    )


def parse_grads(spec: str | GradMode | Sequence[str | GradMode]) -> tuple[GradMode, ...]:
    """``"bptt:5,bptt:29"`` (or a list) -> the modes PGD restarts cycle through, the first being the primary.

    Restart ``r`` of a PGD attack on an EP model differentiates with mode ``r mod len(modes)``,
    so the per-image best over restarts is also a worst case over the gradient modes; single
    runs (warm starts, sweeps' base, the gradient probe) use the first mode.
    """
    if isinstance(spec, GradMode):
        return (spec,)
    items = str(spec).split(",") if isinstance(spec, str) else list(spec)
    modes = tuple(m if isinstance(m, GradMode) else parse_grad(m) for m in items)
    if not modes:
        raise ConfigError("a gradient mode list must not be empty")
    return modes


def grads_label(modes: Sequence[GradMode]) -> str:
    """``"bptt:5,bptt:29"``: the comma-joined ``--grad`` spellings of ``modes``."""
    return ",".join(m.label for m in modes)


@dataclass
class AdjointStats:
    """Convergence record of the implicit mode's adjoint solves (one entry per backward)."""

    iterations: list[int] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)


def dynamics_step(net: EnergyModel, backend: Backend) -> StepFn:
    """One free-phase update of ``backend``'s rule with the model's exact synapses (differentiable)."""
    rule = backend if isinstance(backend, IterativeBackend) else Euler()
    ops = net.digital

    def step(x: Tensor, states: Sequence[Tensor]) -> States:
        return rule.step(net, x, list(states), 0.0, None, ops)[0]

    return step


def bottom_up_sweep(net: EnergyModel, x: Tensor, states: Sequence[Tensor]) -> States:
    """``s^n <- sigma(dPhi/ds^n)`` for n = 1..N in order, each layer using the fresh one below."""
    cur = list(states)
    ops = net.digital
    for i in range(net.n_states):
        drives, _ = net.drives(x, cur, layers=[i], synapses=ops)
        cur[i] = net.activation(drives[i])
    return cur


def surrogate_states(
    mode: GradMode, net: EnergyModel, step: StepFn, x: Tensor, fixed: Sequence[Tensor], stats: AdjointStats
) -> States:
    """States carrying the mode's gradient graph to ``x`` (see the module docstring).

    Args:
        x: images ``(B, C, H, W)`` with ``requires_grad``.
        fixed: the settled states ``s*`` (detached).
    """
    fixed = [s.detach() for s in fixed]
    if mode.kind == "bpda":
        return bottom_up_sweep(net, x, fixed)
    if mode.kind == "implicit":
        return list(_ImplicitFixedPoint.apply(x, step, mode, stats, *fixed))
    cur = net.zeros(x) if mode.start == "zero" else fixed
    for _ in range(mode.k):
        cur = step(x, cur)
    return cur


def intermediate_checkpoints(k: int) -> list[int]:
    """The unroll lengths whose readouts the ``intermediate:K`` mode averages (``K/4, K/2, 3K/4, K``)."""
    return sorted({max(1, round(k * f)) for f in (0.25, 0.5, 0.75, 1.0)})


def surrogate_logits(
    mode: GradMode, net: EnergyModel, step: StepFn, x: Tensor, fixed: Sequence[Tensor], stats: AdjointStats
) -> Tensor:
    """Logits ``(B, classes)`` carrying the mode's gradient graph to ``x`` (readout of :func:`surrogate_states`,
    or for ``intermediate:K`` the mean readout over the trajectory's checkpoints)."""
    if mode.kind != "intermediate":
        return net.logits(surrogate_states(mode, net, step, x, fixed, stats))
    marks = set(intermediate_checkpoints(mode.k))
    cur, outs = net.zeros(x), []
    for i in range(1, mode.k + 1):
        cur = step(x, cur)
        if i in marks:
            outs.append(net.logits(cur))
    return torch.stack(outs).mean(0)


class _ImplicitFixedPoint(torch.autograd.Function):
    """Identity on the fixed point ``s*`` whose backward is the implicit-function VJP w.r.t. ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, step: StepFn, mode: GradMode, stats: AdjointStats, *fixed: Tensor):  # noqa: ANN205
        ctx.step, ctx.mode, ctx.stats = step, mode, stats
        ctx.save_for_backward(x, *fixed)
        return tuple(s.clone() for s in fixed)

    @staticmethod
    def backward(ctx, *grads: Tensor):  # noqa: ANN205
        x, *fixed = ctx.saved_tensors
        mode: GradMode = ctx.mode
        with torch.enable_grad():
            xg = x.detach().requires_grad_()
            sg = [s.detach().requires_grad_() for s in fixed]
            out = ctx.step(xg, sg)
            v = [g.clone() for g in grads]
            converged, it = False, 0
            for it in range(1, mode.max_iter + 1):
                jtv = torch.autograd.grad(out, sg, v, retain_graph=True, allow_unused=True)
                new = [g if j is None else g + j for g, j in zip(grads, jtv)]
                change = max(float((a - b).abs().max()) for a, b in zip(new, v))
                scale = max(float(a.abs().max()) for a in new)
                v = new
                if change <= mode.tol * max(scale, 1e-30):
                    converged = True
                    break
            gx = torch.autograd.grad(out, xg, v, allow_unused=True)[0]
        ctx.stats.iterations.append(it)
        ctx.stats.converged.append(converged)
        return (torch.zeros_like(x) if gx is None else gx, None, None, None, *([None] * len(fixed)))
