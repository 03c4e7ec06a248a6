"""Asynchronous (even/odd) updates: Scellier et al. 2023; Goemaere et al. 2024.

Given its neighbours, a layer's drive does not depend on the other layers of the
same parity, so all odd layers are updated together, then all even layers from the
freshly updated odd ones (a block Gauss-Seidel / leapfrog-like sweep). Each
half-step sets a layer to the minimiser of a tight upper bound of the energy (the
max-pooling terms are convex in the layer below), so the energy never increases,
and a sweep usually propagates information twice as far as a synchronous step.

Cost: a synapse layer's forward term (and its pooling switches) depends only on the
layer below it, which moves once per sweep, so :class:`~ephw.model.terms.SynapseTerms`
keeps every term across half-sweeps and sweeps: one forward conv and one transposed
conv per layer per sweep, as in a synchronous step.

:class:`SOR` over-relaxes each half-step (projected successive over-relaxation):
``s <- clamp((1 - omega) s + omega sigma(drive), 0, 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ephw.backends.base import Advance, IterativeBackend
from ephw.errors import BackendError
from ephw.model import EnergyModel, States, Synapses
from ephw.model.terms import SynapseTerms


class Async(IterativeBackend):
    """One step = update layers ``s^1, s^3, ...`` then ``s^2, s^4, ...``."""

    name = "async"
    description = "even/odd layer alternation, each half-step using the fresh neighbours"

    #: relaxation factor of each half-step (1: plain block Gauss-Seidel)
    omega: float = 1.0

    def start(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> SynapseTerms:
        return net.terms(x, states, ops)

    def step(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> tuple[States, Tensor]:
        adv = self.advance(net, x, states, beta, target, ops, self.start(net, x, states, beta, target, ops))
        return adv.states, adv.energy

    def advance(
        self,
        net: EnergyModel,
        x: Tensor,
        states: States,
        beta: float,
        target: Tensor | None,
        ops: Synapses,
        carry: SynapseTerms | None,
    ) -> Advance:
        """One sweep; ``carry`` holds the forward terms at ``states`` (stale ones are recomputed)."""
        terms = carry if carry is not None else self.start(net, x, states, beta, target, ops)
        new, energy = self.sweep(net, states, beta, target, terms)
        return Advance(new, energy, terms)

    def sweep(
        self,
        net: EnergyModel,
        states: States,
        beta: float,
        target: Tensor | None,
        terms: SynapseTerms,
        omega: Tensor | None = None,
    ) -> tuple[States, Tensor]:
        """The odd layers, then the even ones, from ``terms`` (kept current); the new states and
        the ``(B,)`` energy at ``states``. ``omega`` ``(B,)``: per-sample relaxation (default :attr:`omega`)."""
        new = list(states)
        energy = None
        for parity in (0, 1):  # 0-based index 0 is s^1, an odd layer
            layers = range(parity, net.n_states, 2)
            drives = [terms.drive(i, beta, target) for i in layers]
            if energy is None:
                energy = net.self_energy(states) - terms.phi(beta, target)
            for i, u in zip(layers, drives):
                new[i] = self.relax(net, new[i], u, omega)
            terms.update(new, layers)
        return new, energy

    def energy(
        self,
        net: EnergyModel,
        x: Tensor,
        states: States,
        beta: float,
        target: Tensor | None,
        ops: Synapses,
        carry: SynapseTerms | None,
        which: Tensor,
    ) -> Tensor:
        """From the cached terms at ``states`` (computing the stale ones, which the next sweep reuses)."""
        if carry is None:
            return super().energy(net, x, states, beta, target, ops, carry, which)
        return (net.self_energy(states) - carry.phi(beta, target))[which]

    def relax(self, net: EnergyModel, s: Tensor, drive: Tensor, omega: Tensor | None = None) -> Tensor:
        """The half-step update of one layer: ``sigma(drive)``, over-relaxed by :attr:`omega` or
        by the per-sample ``omega`` ``(B,)`` when given."""
        target = net.activation(drive)
        if omega is None:
            if self.omega == 1.0:
                return target
            return (s + self.omega * (target - s)).clamp_(0.0, 1.0)
        w = omega.view(-1, *([1] * (s.dim() - 1)))
        return torch.where(w == 1.0, target, (s + w * (target - s)).clamp_(0.0, 1.0))  # omega 1: exactly async


class SOR(Async):
    """Projected over-relaxation of the async sweep.

    Each half-step moves a layer ``omega`` times the way to ``sigma(drive)`` and projects
    back onto the box ``[0, 1]``. Fixed points are those of ``async`` (``s = sigma(drive)``
    for every layer); the residual is ``max |delta s| / omega``, i.e. in units of the
    plain sweep. Over-relaxation does not guarantee energy descent; on the bundled digits
    model the default ``omega`` was tuned for steps and for staying in ``async``'s basin
    (docs/solvers.md). Over-relaxing *synchronous* updates diverges on these nets.
    """

    name = "sor"
    description = "async sweep with projected over-relaxation s <- clamp((1-w) s + w sigma(u), 0, 1)"

    def __init__(self, omega: float = 1.2) -> None:
        if not 0.0 < omega < 2.0:
            raise BackendError(f"sor: omega must be in (0, 2), got {omega}")
        self.omega = float(omega)
        self.residual_scale = self.omega
