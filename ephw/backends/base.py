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
from ephw.model.tensors import channels_last, put_rows, take_rows


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
        """The carry of the samples ``keep`` (indices ``(B_kept,)`` into ``B_active``; :func:`take_rows`)."""
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
    #: steps between host reads of the convergence flags (:meth:`sync_steps`; ``None``: per device)
    sync_every: int | None = None

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

    def energy(
        self,
        net: EnergyModel,
        x: Tensor,
        states: States,
        beta: float,
        target: Tensor | None,
        ops: Synapses,
        carry: Carry | None,
        which: Tensor,
    ) -> Tensor:
        """Energy ``(n,)`` of the samples ``which`` (bool ``(B_active,)``) at ``states``, the last step's result.

        The loop asks for it when samples freeze and at the end. By default one
        evaluation of :meth:`EnergyModel.energy` on those samples; a backend whose carry
        already holds the terms at ``states`` answers from them (async).
        """
        t = None if target is None else target[which]
        return net.energy(x[which], [s[which] for s in states], beta, t, ops)

    def sync_steps(self, device: torch.device) -> int:
        """Steps between the loop's reads of the convergence flags on the host.

        Reading ``done.any()`` is a host sync on CUDA; between reads, converged samples stay
        in the computed batch with their states held on the device (exact results, some
        wasted work). :attr:`sync_every` (``None``: 1 on CPU, where reading is free, 8 on CUDA).
        """
        if self.sync_every is not None:
            return max(1, int(self.sync_every))
        return 8 if device.type == "cuda" else 1

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
        """Iterate :meth:`advance`; with ``tol``, each sample is frozen once its residual drops below it.

        Frozen samples leave the batch that is computed (so a batch costs what its
        slow samples need, not ``B x`` their steps); their traces record residual 0
        and constant energy from then on, which is exactly what their states do.
        The batch is compacted when the host reads the flags (every :meth:`sync_steps`);
        until then a converged sample's state and energy are held on the device.
        """
        start = time.perf_counter()
        batch = x.shape[0]
        every = self.sync_steps(x.device)
        with torch.no_grad():
            ops = self.synapses(net)
            states = initial_states(net, x, init)
            energy = x.new_zeros(batch)  # the energy trace's current row, filled by the first step
            per_sample = torch.full((batch,), steps, dtype=torch.long, device=x.device)
            frozen = torch.zeros(batch, dtype=torch.bool, device=x.device)
            residuals: list[Tensor] = []
            energies: list[Tensor] = []
            active = torch.arange(batch, device=x.device)
            cur, x_act, t_act = states, x, target
            carry = self.start(net, x_act, cur, beta, t_act, ops)
            # per active sample, between host reads: converged (``done``), at which step, held state/energy
            done = torch.zeros(batch, dtype=torch.bool, device=x.device)
            fresh = done  # converged at the previous step (its energy is this step's start energy)
            at_step = per_sample.clone()
            hold: States | None = None
            e_hold = energy
            for k in range(steps):
                adv = self.advance(net, x_act, cur, beta, t_act, ops, carry)
                new, carry = adv.states, adv.carry
                r = max_abs_change(new, cur) / self.residual_scale if adv.residual is None else adv.residual
                e_step = adv.energy.to(energy.dtype)
                if every > 1:
                    e_hold = torch.where(fresh, e_step, e_hold)
                    e_step = torch.where(done, e_hold, e_step)
                    r = r.masked_fill(done, 0.0)
                energy = energy.index_put((active,), e_step)
                energies.append(energy)
                residuals.append(x.new_zeros(batch).index_put((active,), r.to(x.dtype)))
                if tol is None:
                    cur = new
                    continue
                newly = r < tol
                if self.plateau_window and k + 1 >= 2 * self.plateau_window:
                    newly |= self._on_plateau(residuals, active)
                if every > 1:
                    newly &= ~done
                    hold = new if hold is None else [torch.where(_rows(newly, h), n, h) for n, h in zip(new, hold)]
                    at_step = torch.where(newly, k + 1, at_step)
                    done, fresh = done | newly, newly
                else:
                    hold, at_step, done, fresh = new, at_step.fill_(k + 1), newly, newly
                if (k + 1) % every and k + 1 < steps:
                    cur = new
                    continue
                if bool(done.any()):  # the host sync: compact the batch
                    gone = done.nonzero().squeeze(1)
                    idx = active.index_select(0, gone)
                    for full, s in zip(states, hold):
                        put_rows(full, idx, take_rows(s, gone))
                    frozen[idx] = True
                    per_sample[idx] = at_step.index_select(0, gone)
                    e_done = e_hold.clone() if every > 1 else x.new_zeros(done.shape[0])
                    if bool(fresh.any()):  # converged at this step: the energy at their state
                        e_new = self.energy(net, x_act, new, beta, t_act, ops, carry, fresh).to(energy.dtype)
                        e_done = e_done.masked_scatter(fresh, e_new)
                    energy = energy.index_put((idx,), e_done.index_select(0, gone))
                    keep = (~done).nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    active = active.index_select(0, keep)
                    new = [take_rows(s, keep) for s in new]
                    hold = None if every == 1 else [take_rows(s, keep) for s in hold]
                    x_act = take_rows(x_act, keep)
                    t_act = None if t_act is None else t_act.index_select(0, keep)
                    carry = None if carry is None else carry.select(keep)
                    done, fresh = done.index_select(0, keep), fresh.index_select(0, keep)
                    at_step, e_hold = at_step.index_select(0, keep), e_hold.index_select(0, keep)
                cur = new
            else:
                for full, s in zip(states, cur):
                    put_rows(full, active, s)
                e_end = self.energy(net, x_act, cur, beta, t_act, ops, carry, torch.ones_like(active, dtype=torch.bool))
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
    """``max |new - old|`` per sample over all layers and units, ``(B,)``.

    Reduces over the non-batch dims in place (no ``flatten``: that copies a channels-last tensor).
    """
    return torch.stack([(a - b).abs_().amax(tuple(range(1, a.dim()))) for a, b in zip(new, old)]).amax(0)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` ``(B,)`` shaped to broadcast over ``like`` ``(B, ...)``."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def check_settle_args(
    net: EnergyModel,
    x: Tensor,
    steps: int,
    tol: float | None,
    beta: float,
    target: Tensor | None,
    backend: str | None = None,
) -> None:
    """Validate the arguments common to every backend (raises :class:`InputError`; ``backend`` names it in messages)."""
    net.check_input(x)
    if x.shape[0] == 0:  # every backend's state shapes are (B, ...): nothing to settle, and torch would fail
        raise InputError(f"{backend + ': ' if backend else ''}an empty batch (0 images): nothing to settle")
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
