"""The equilibrium-propagation gradient estimator, centered (symmetric) or positive nudging.

Laborieux et al. 2021 ("thirdphase"); Scellier et al. 2023. With free fixed point
``s*`` and nudged fixed points ``s^{+beta}``, ``s^{-beta}`` reached from ``s*``,

    grad_theta L  ~=  -[dPhi_beta/dtheta(s^{+beta}) - dPhi_{-beta}/dtheta(s^{-beta})] / (2 beta),

where ``Phi_beta = Phi - beta L`` (the readout weights of a softmax model enter only
through ``L``). The bias of this estimate is O(beta^2). The *positive* (one-sided) estimate
``-[dPhi_beta/dtheta(s^{+beta}) - dPhi/dtheta(s*)] / beta`` (Scellier & Bengio 2017) needs one
nudged phase instead of two, at an O(beta) bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ephw.backends import Backend, SettleResult, settle
from ephw.model import EnergyModel

NUDGINGS = ("centered", "positive")


@dataclass
class EPStep:
    """One EP gradient evaluation on a batch."""

    free: SettleResult
    plus: SettleResult
    minus: SettleResult | None  # None with positive nudging
    grads: list[Tensor]  # one per ``net.parameters()``, the loss-descent gradient


def ep_gradient(
    net: EnergyModel,
    x: Tensor,
    target: Tensor,
    plus: Sequence[Tensor],
    minus: Sequence[Tensor],
    beta: float,
) -> list[Tensor]:
    """The symmetric EP estimate of ``d mean(L)/d theta`` from the two nudged fixed points."""
    params = list(net.parameters())
    with torch.enable_grad():
        phi_plus = net.phi(x, [s.detach() for s in plus], beta, target)
        phi_minus = net.phi(x, [s.detach() for s in minus], -beta, target)
        delta = (phi_plus - phi_minus).mean() / (2.0 * beta)
        return list(torch.autograd.grad(-delta, params))


def ep_gradient_positive(
    net: EnergyModel, x: Tensor, target: Tensor, free: Sequence[Tensor], plus: Sequence[Tensor], beta: float
) -> list[Tensor]:
    """The one-sided EP estimate of ``d mean(L)/d theta`` from the free and the ``+beta`` fixed points."""
    params = list(net.parameters())
    with torch.enable_grad():
        phi_plus = net.phi(x, [s.detach() for s in plus], beta, target)
        phi_free = net.phi(x, [s.detach() for s in free])
        delta = (phi_plus - phi_free).mean() / beta
        return list(torch.autograd.grad(-delta, params))


def ep_step(
    net: EnergyModel,
    x: Tensor,
    target: Tensor,
    *,
    backend: str | Backend = "euler",
    beta: float = 0.5,
    free_steps: int = 250,
    nudge_steps: int = 25,
    tol: float | None = None,
    init: Sequence[Tensor] | None = None,
    nudging: str = "centered",
) -> EPStep:
    """Free phase, then the nudged phase(s) from the free fixed point, then the gradient.

    Args:
        init: where the free phase starts (default the null state; see
            :mod:`ephw.training.free_states`).
        nudging: ``"centered"`` (``+beta`` and ``-beta`` phases) or ``"positive"`` (``+beta`` only).
        tol: stops the free phase early; nudged phases run ``nudge_steps`` unless they reach
            ``tol`` first.
    """
    if nudging not in NUDGINGS:
        raise ValueError(f"nudging must be one of {', '.join(NUDGINGS)}, got {nudging!r}")
    free = settle(net, x, backend, steps=free_steps, tol=tol, init=init)
    plus = settle(net, x, backend, steps=nudge_steps, tol=tol, beta=beta, target=target, init=free.states)
    if nudging == "positive":
        return EPStep(free, plus, None, ep_gradient_positive(net, x, target, free.states, plus.states, beta))
    minus = settle(net, x, backend, steps=nudge_steps, tol=tol, beta=-beta, target=target, init=free.states)
    return EPStep(free, plus, minus, ep_gradient(net, x, target, plus.states, minus.states, beta))
