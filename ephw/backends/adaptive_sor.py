"""Adaptive over-relaxation of the async sweep: plain sweeps until the rate is steady, then Young's omega.

The async sweep updates the odd layers, then the even ones: block Gauss-Seidel in red-black
order on a layered network. With the active set fixed (which units sit on the hard sigmoid's
clamp, which unit wins each pooling window) the map is affine with a symmetric coupling, and
the red-black ordering makes it *consistently ordered* (Young 1971): plain sweeps then
contract the error by ``rho`` per sweep (``rho`` = the Jacobi radius squared), and over-relaxed
sweeps with ``omega_opt = 2 / (1 + sqrt(1 - rho))`` contract it by ``omega_opt - 1``. For
``rho = 0.94`` (~150 sweeps from 1 to 1e-4) that is 0.61 per sweep (~19 sweeps).

A fixed ``omega`` from the first sweep (:class:`~ephw.backends.asynchronous.SOR`) changes the
trajectory while the active set is still forming, and on trained max-pooling nets that can
end in another, equally valid fixed point (docs/physics.md). Here, per sample:

- sweeps are plain (``omega = 1``, exactly ``async``) while the residual ratio
  ``q_k = r_k / r_{k-1}`` still moves: the active set is still changing;
- once ``q`` has stayed within ``rate_tol`` of itself for ``steady`` sweeps (the affine,
  asymptotic regime), ``omega = 1 + damping * (omega_opt(q) - 1)``, at most ``omega_max``
  (an overestimate of ``omega_opt`` costs little, an underestimate much, but the estimate
  of ``rho`` from few sweeps is low, so ``damping`` stays at 1 by default);
- safeguard: a sample whose residual rises above ``safeguard`` times the smallest it had
  since its ``omega`` was set (the active set changed under the larger steps) goes back to
  plain sweeps and estimates again.

Fixed points are ``async``'s (``s = sigma(drive)``); the residual is ``max |delta s| / omega``
(in plain-sweep units, as for ``sor``). Energy descent is not guaranteed while over-relaxed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ephw.backends.asynchronous import Async
from ephw.backends.base import Advance, max_abs_change
from ephw.errors import BackendError
from ephw.model import EnergyModel, States, Synapses
from ephw.model.terms import SynapseTerms


class RateCarry:
    """The sweep's forward terms plus, per sample ``(B,)``: omega, last residual and ratio, steady count, best."""

    def __init__(self, terms: SynapseTerms, batch: int, like: Tensor) -> None:
        self.terms = terms
        self.omega = like.new_ones(batch)
        self.r_prev = like.new_full((batch,), math.inf)
        self.q_prev = like.new_full((batch,), math.inf)
        self.steady = torch.zeros(batch, dtype=torch.long, device=like.device)
        self.best = like.new_full((batch,), math.inf)  # smallest residual since omega was set

    def phi(self, beta: float, target: Tensor | None) -> Tensor:
        """The terms' ``Phi`` ``(B,)``: what :meth:`Async.energy` reads from a carry."""
        return self.terms.phi(beta, target)

    def select(self, keep: Tensor) -> RateCarry:
        self.terms = self.terms.select(keep)
        for name in ("omega", "r_prev", "q_prev", "steady", "best"):
            setattr(self, name, getattr(self, name).index_select(0, keep))
        return self


class AdaptiveSOR(Async):
    """Async sweeps, over-relaxed per sample with Young's omega once the convergence rate is steady."""

    name = "asor"
    description = "async sweep, over-relaxed per sample once its rate is steady (omega from Young's formula)"

    def __init__(
        self,
        steady: int = 3,
        rate_tol: float = 0.01,
        omega_max: float = 1.9,
        damping: float = 1.0,
        safeguard: float = 2.0,
    ) -> None:
        if not isinstance(steady, int) or steady < 1:
            raise BackendError(f"asor: steady must be a positive integer, got {steady!r}")
        if not 1.0 <= omega_max < 2.0:
            raise BackendError(f"asor: omega_max must be in [1, 2), got {omega_max}")
        if not 0.0 < damping <= 1.0 or not rate_tol > 0.0 or not safeguard > 1.0:
            raise BackendError("asor: damping must be in (0, 1], rate_tol > 0 and safeguard > 1")
        self.steady, self.rate_tol, self.omega_max = steady, float(rate_tol), float(omega_max)
        self.damping, self.safeguard = float(damping), float(safeguard)

    def start(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> RateCarry:
        return RateCarry(super().start(net, x, states, beta, target, ops), x.shape[0], states[0])

    def advance(
        self,
        net: EnergyModel,
        x: Tensor,
        states: States,
        beta: float,
        target: Tensor | None,
        ops: Synapses,
        carry: RateCarry | None,
    ) -> Advance:
        c = carry if carry is not None else self.start(net, x, states, beta, target, ops)
        plain = not c.omega.is_cuda and bool((c.omega == 1.0).all())  # on CPU the check is free
        new, energy = self.sweep(net, states, beta, target, c.terms, None if plain else c.omega)
        r = max_abs_change(new, states) / c.omega
        self._adapt(c, r)
        return Advance(new, energy, c, r)

    def _adapt(self, c: RateCarry, r: Tensor) -> None:
        """Update each sample's omega from this sweep's residual ``r`` ``(B,)`` (module docstring)."""
        plain = c.omega == 1.0
        q = r / c.r_prev
        c.steady = torch.where(plain & ((q - c.q_prev).abs() < self.rate_tol) & (q < 1.0), c.steady + 1, 0)
        young = 2.0 / (1.0 + torch.sqrt((1.0 - q).clamp_min(1e-12)))
        start = plain & (c.steady >= self.steady)
        omega = torch.where(start, (1.0 + self.damping * (young - 1.0)).clamp(1.0, self.omega_max), c.omega)
        fallback = ~plain & (r > self.safeguard * c.best)
        omega = torch.where(fallback, torch.ones_like(omega), omega)
        c.best = torch.where(start | fallback, torch.full_like(r, math.inf), torch.minimum(c.best, r))
        c.steady = torch.where(fallback, torch.zeros_like(c.steady), c.steady)
        c.omega, c.r_prev, c.q_prev = omega, r, q
