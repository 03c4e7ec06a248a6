"""Asynchronous (even/odd) updates: Scellier et al. 2023; Goemaere et al. 2024.

Given its neighbours, a layer's drive does not depend on the other layers of the
same parity, so all odd layers are updated together, then all even layers from the
freshly updated odd ones (a block Gauss-Seidel / leapfrog-like sweep). Each
half-step sets a layer to the minimiser of a tight upper bound of the energy (the
max-pooling terms are convex in the layer below), so the energy never increases,
and a sweep usually propagates information twice as far as a synchronous step.
"""

from __future__ import annotations

from torch import Tensor

from ephw.backends.base import IterativeBackend
from ephw.model import EnergyModel, States, Synapses


class Async(IterativeBackend):
    """One step = update layers ``s^1, s^3, ...`` then ``s^2, s^4, ...``."""

    name = "async"
    description = "even/odd layer alternation, each half-step using the fresh neighbours"

    def step(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> tuple[States, Tensor]:
        new = list(states)
        energy = None
        for parity in (0, 1):  # 0-based index 0 is s^1, an odd layer
            layers = range(parity, net.n_states, 2)
            drives, phi = net.drives(x, new, beta, target, layers=layers, synapses=ops)
            if energy is None:
                energy = net.self_energy(states) - phi
            for i in layers:
                new[i] = net.activation(drives[i])
        return new, energy
