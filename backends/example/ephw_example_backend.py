"""The smallest ephw backend plugin: damped fixed-point iteration ``s <- s + rate (sigma(u(s)) - s)``.

Install it (``pip install -e backends/example``) and ``ephw backends`` lists ``damped``;
``ephw settle --backend damped --set damped.rate=0.5`` settles on it. The contract it follows
is ``backends/README.md``.
"""

from __future__ import annotations

from torch import Tensor

from ephw.backends import IterativeBackend
from ephw.errors import BackendError
from ephw.model import EnergyModel, States, Synapses


class Damped(IterativeBackend):
    """Every layer moves the fraction ``rate`` of the way to its activation at once."""

    name = "damped"  # must equal the entry-point name
    description = "damped synchronous fixed-point iteration (example plugin)"
    nudging = True  # the step takes beta/target, so EP's nudged phases work

    def __init__(self, rate: float = 0.5) -> None:
        if not 0.0 < rate <= 1.0:
            raise BackendError(f"damped: rate must be in (0, 1], got {rate}")
        self.rate = float(rate)
        self.residual_scale = self.rate  # residual = max|s_new - s_old| / rate = max|sigma(u) - s|

    def step(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> tuple[States, Tensor]:
        drives, phi = net.drives(x, states, beta, target, synapses=ops)  # u = dPhi/ds, and Phi
        energy = net.self_energy(states) - phi  # E of the states this step starts from, (B,)
        return [s + self.rate * (net.activation(u) - s) for s, u in zip(states, drives)], energy
