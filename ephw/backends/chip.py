"""One programmed chip per backend instance, re-programmed as training updates the weights.

A hardware backend (ephw's ``crossbar``, a plugin's analog tiles) builds its simulated synapses
once per model -- programming draws the device noise -- and keeps them: every settle reads the
same chip. During EP training the optimizer updates the weights in place; torch bumps each
tensor's ``_version`` then, and the chip writes the new weights only every
``reprogram_every`` updates (hardware-in-the-loop training with sparse reprogramming).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import torch

from ephw.errors import BackendError
from ephw.model import EnergyModel


class Programmable(Protocol):
    def reprogram(self) -> None: ...


S = TypeVar("S", bound=Programmable)


class ProgrammedChip(Generic[S]):
    """The synapses ``build(net)`` made for the last model seen, re-programmed after weight updates.

    Args:
        build: programs a chip for a model (called again for another model object).
        reprogram_every: weight updates between two re-programmings (>= 1).
        owner: the backend's name, for the error message.
    """

    def __init__(self, build: Callable[[EnergyModel], S], reprogram_every: int = 1, owner: str = "backend") -> None:
        if reprogram_every < 1:
            raise BackendError(f"{owner}: reprogram_every must be >= 1, got {reprogram_every}")
        self.build = build
        self.reprogram_every = int(reprogram_every)
        self._updates = 0
        self._chip: tuple[int, tuple[int, ...], S] | None = None

    def synapses(self, net: EnergyModel) -> S:
        """This model's chip: programmed on first use, re-programmed once ``reprogram_every`` updates came."""
        version = tuple(p._version for p in net.parameters())
        with torch.no_grad():
            if self._chip is None or self._chip[0] != id(net):
                self._chip = (id(net), version, self.build(net))
                self._updates = 0
            elif self._chip[1] != version:
                self._updates += 1
                if self._updates >= self.reprogram_every:
                    self._chip[2].reprogram()
                    self._updates = 0
                self._chip = (id(net), version, self._chip[2])
        return self._chip[2]

    def forget(self) -> None:
        """Drop the chip (the next use programs a new one)."""
        self._chip = None
