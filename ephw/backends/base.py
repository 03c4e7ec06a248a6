"""The backend interface and the settle loop shared by iterative backends.

A backend is a *how*: a way of driving an :class:`~ephw.model.EnergyModel` to a
minimum of its energy. Every backend returns a :class:`SettleResult`, so fixed
points are comparable across backends.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor

from ephw.errors import InputError
from ephw.model import EnergyModel, States, Synapses
from ephw.model.energy import channels_last


@dataclass
class SettleResult:
    """Outcome of settling a batch of ``B`` images.

    Attributes:
        states: the final states, ``N`` tensors ``(B, *state_shape)``.
        logits: class scores at the final states, ``(B, classes)``.
        steps: iterations the backend ran (the same for the whole batch).
        steps_per_sample: ``(B,)`` step at which each sample's residual first fell
            below ``tol`` and the sample was frozen (``steps`` for samples that never
            got there).
        converged: ``(B,)`` bool, the sample reached ``tol`` (or, on a backend with
            stochastic reads, a stationary residual: see
            :attr:`IterativeBackend.plateau_window`); ``None`` when the run had no
            tolerance (fixed number of steps).
        residuals: ``(steps, B)`` per-step residual ``max |s_new - s_old| / dt`` over
            all layers and units (for ``dt = 1`` that is ``max |sigma(dPhi/ds) - s|``);
            0 once a sample is frozen.
        energies: ``(steps + 1, B)`` energy ``E`` (with the nudging term) at the
            start and after each step.
        backend: name of the backend that produced the result.
        seconds: wall-clock time of the settle.
    """

    states: States
    logits: Tensor
    steps: int
    steps_per_sample: Tensor
    converged: Tensor | None
    residuals: Tensor
    energies: Tensor
    backend: str
    seconds: float

    @property
    def predictions(self) -> Tensor:
        return self.logits.argmax(1)

    @property
    def converged_fraction(self) -> float | None:
        return None if self.converged is None else float(self.converged.float().mean())


class Carry(Protocol):
    """Per-settle data a backend keeps between steps; batch-first, so frozen samples can leave."""

    def select(self, keep: Tensor) -> Carry:
        """The carry of the samples ``keep`` (bool ``(B_active,)``)."""
        ...


class Advance(NamedTuple):
    """One step of the settle loop.

    Attributes:
        states: the new states (what a sample is frozen at once it has converged).
        energy: ``(B,)`` energy of the point the step started from.
        carry: the backend's carry for the next step (``None`` if it keeps none).
        residual: ``(B,)`` fixed-point residual of this step; ``None``: ``max |new - old| / residual_scale``.
    """

    states: States
    energy: Tensor
    carry: Carry | None = None
    residual: Tensor | None = None


class Backend(ABC):
    """A way of minimising the energy of an :class:`EnergyModel`.

    Subclasses set ``name`` and implement :meth:`settle`. Options (step sizes,
    hardware parameters) are constructor arguments.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def settle(
        self,
        net: EnergyModel,
        x: Tensor,
        *,
        steps: int,
        tol: float | None,
        beta: float = 0.0,
        target: Tensor | None = None,
        init: Sequence[Tensor] | None = None,
    ) -> SettleResult:
        """Settle ``net`` on images ``x`` (see :func:`ephw.backends.settle`)."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


class IterativeBackend(Backend):
    """A backend that applies a state update ``step`` until the residual drops below ``tol``.

    Subclasses implement :meth:`step`; the loop, stopping rule and traces live here.
    """

    #: The residual is ``max |s_new - s_old| / residual_scale`` (Euler: ``dt``).
    residual_scale: float = 1.0
    #: With stochastic reads the residual never reaches ``tol``: a sample also counts as
    #: settled once its residual is stationary, i.e. the mean over the last
    #: ``plateau_window`` steps is no longer below ``plateau_ratio`` x the mean over the
    #: ``plateau_window`` steps before (``None``: only ``tol`` stops a sample).
    plateau_window: int | None = None
    plateau_ratio: float = 0.9

    @abstractmethod
    def step(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> tuple[States, Tensor]:
        """One update. Returns the new states and the energy ``(B,)`` of the *old* states.

        ``ops`` evaluates the synapses' linear maps (see :meth:`synapses`).
        """

    def start(
        self, net: EnergyModel, x: Tensor, states: States, beta: float, target: Tensor | None, ops: Synapses
    ) -> Carry | None:
        """What the backend keeps between steps of one settle (e.g. cached forward terms); none by default."""
        return None

    def advance(
        self,
        net: EnergyModel,
        x: Tensor,
        states: States,
        beta: float,
        target: Tensor | None,
        ops: Synapses,
        carry: Carry | None,
    ) -> Advance:
        """One update inside the settle loop, with the backend's ``carry`` (default: :meth:`step`).

        Backends that cache across steps or iterate on points other than ``states``
        (accelerated solvers) override this; ``residual`` ``None`` means ``max |new - states|``.
        """
        new, energy = self.step(net, x, states, beta, target, ops)
        return Advance(new, energy, carry)

    def synapses(self, net: EnergyModel) -> Synapses:
        """How this backend evaluates ``w * s`` and its transpose: exactly, by default.

        Hardware backends return their own (e.g. reads of a programmed crossbar).
        """
        return net.digital

    def settle(
        self,
        net: EnergyModel,
        x: Tensor,
        *,
        steps: int,
        tol: float | None,
        beta: float = 0.0,
        target: Tensor | None = None,
        init: Sequence[Tensor] | None = None,
    ) -> SettleResult:
        """Iterate :meth:`step`; with ``tol``, each sample is frozen once its residual drops below it.

        Frozen samples leave the batch that is computed (so a batch costs what its
        slow samples need, not ``B x`` their steps); their traces record residual 0
        and constant energy from then on, which is exactly what their states do.
        """
        start = time.perf_counter()
        batch = x.shape[0]
        with torch.no_grad():
            ops = self.synapses(net)
            states = initial_states(net, x, init)
            energy = x.new_zeros(batch)  # filled by the first step
            per_sample = torch.full((batch,), steps, dtype=torch.long, device=x.device)
            frozen = torch.zeros(batch, dtype=torch.bool, device=x.device)
            residuals: list[Tensor] = []
            energies: list[Tensor] = []
            active = torch.arange(batch, device=x.device)
            cur, x_act, t_act = states, x, target
            carry = self.start(net, x_act, cur, beta, t_act, ops)
            for k in range(steps):
                adv = self.advance(net, x_act, cur, beta, t_act, ops, carry)
                new, carry = adv.states, adv.carry
                r = max_abs_change(new, cur) / self.residual_scale if adv.residual is None else adv.residual
                energy = energy.index_put((active,), adv.energy.to(energy.dtype))
                energies.append(energy)
                residuals.append(x.new_zeros(batch).index_put((active,), r.to(x.dtype)))
                done = r < tol if tol is not None else torch.zeros_like(r, dtype=torch.bool)
                if tol is not None and self.plateau_window and k + 1 >= 2 * self.plateau_window:
                    done |= self._on_plateau(residuals, active)
                if bool(done.any()):
                    idx = active[done]
                    for full, s in zip(states, new):
                        full[idx] = s[done].to(full.dtype)
                    frozen[idx] = True
                    per_sample[idx] = k + 1
                    e_new = net.energy(
                        x_act[done], [s[done] for s in new], beta, None if t_act is None else t_act[done], ops
                    )
                    energy = energy.index_put((idx,), e_new.to(energy.dtype))
                    keep = ~done
                    if not bool(keep.any()):
                        break
                    active = active[keep]
                    new = [s[keep] for s in new]
                    x_act = x_act[keep]
                    t_act = None if t_act is None else t_act[keep]
                    carry = None if carry is None else carry.select(keep)
                cur = new
            else:
                for full, s in zip(states, cur):
                    full[active] = s.to(full.dtype)
                e_end = net.energy(x_act, cur, beta, t_act, ops)
                energy = energy.index_put((active,), e_end.to(energy.dtype))
            energies.append(energy)
            logits = net.logits(states, ops)
        res = torch.stack(residuals) if residuals else x.new_zeros((0, batch))
        return SettleResult(
            states=states,
            logits=logits,
            steps=res.shape[0],
            steps_per_sample=per_sample.cpu(),
            converged=None if tol is None else frozen.cpu(),
            residuals=res.cpu(),
            energies=torch.stack(energies).cpu(),
            backend=self.name,
            seconds=time.perf_counter() - start,
        )

    def _on_plateau(self, residuals: list[Tensor], active: Tensor) -> Tensor:
        w = self.plateau_window
        window = torch.stack(residuals[-2 * w :])[:, active]  # (2w, active)
        return window[w:].mean(0) >= self.plateau_ratio * window[:w].mean(0)


def initial_states(net: EnergyModel, x: Tensor, init: Sequence[Tensor] | None) -> States:
    """Copies of ``init`` (checked against the model), or the null state."""
    if init is None:
        return net.zeros(x)
    net.check_states(init, x.shape[0])
    return [channels_last(s.detach().to(x.dtype).clone()) for s in init]


def max_abs_change(new: Sequence[Tensor], old: Sequence[Tensor]) -> Tensor:
    """``max |new - old|`` per sample over all layers and units, ``(B,)``."""
    return torch.stack([(a - b).abs().flatten(1).amax(1) for a, b in zip(new, old)]).amax(0)


def check_settle_args(
    net: EnergyModel, x: Tensor, steps: int, tol: float | None, beta: float, target: Tensor | None
) -> None:
    """Validate the arguments common to every backend (raises :class:`InputError`)."""
    net.check_input(x)
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps!r}")
    if tol is not None and not tol > 0:
        raise InputError(f"tol must be positive (or None for a fixed number of steps), got {tol!r}")
    if beta != 0.0:
        if target is None:
            raise InputError("a non-zero beta needs a target")
        if target.shape[0] != x.shape[0]:
            raise InputError(f"target has {target.shape[0]} rows for {x.shape[0]} images")
    param = next(net.parameters())
    if x.dtype != param.dtype or x.device != param.device:
        raise InputError(
            f"images are {x.dtype} on {x.device} but the model is {param.dtype} on {param.device}; move one of them"
        )
