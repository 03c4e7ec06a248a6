"""Synchronous Euler integration of the state dynamics (seed paper Eq. 2)."""

from __future__ import annotations

from torch import Tensor

from ephw.backends.base import IterativeBackend
from ephw.errors import BackendError
from ephw.model import EnergyModel, States, Synapses


class Euler(IterativeBackend):
    """``s <- s + dt * (sigma(dPhi/ds) - s)`` for all layers at once.

    ``dt = 1`` is the usual fixed-point iteration ``s <- sigma(dPhi/ds)``
    (Laborieux et al. 2021); ``dt < 1`` follows the continuous-time flow, along
    which the energy never increases. Since the states stay in ``[0, 1]`` for
    ``0 < dt <= 1``, no projection is needed.
    """

    name = "euler"
    description = "synchronous Euler integration of ds/dt = -s + sigma(dPhi/ds)"

    def __init__(self, dt: float = 1.0) -> None:
        if not 0.0 < dt <= 1.0:
            raise BackendError(f"euler: dt must be in (0, 1], got {dt}")
        self.dt = float(dt)
        self.residual_scale = self.dt

    def step(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> tuple[States, Tensor]:
        drives, phi = net.drives(x, states, beta, target, synapses=ops)
        energy = net.self_energy(states) - phi
        if self.dt == 1.0:
            return [net.activation(u) for u in drives], energy
        return [s + self.dt * (net.activation(u) - s) for s, u in zip(states, drives)], energy
