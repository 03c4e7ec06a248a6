"""Forward terms of every synapse layer, kept across the half-sweeps of layer-parity updates.

Synapse layer ``j`` (convs first, then dense) reads the state below it (``s^0`` = the
normalised image for ``j = 0``, else ``states[j - 1]``, 0-based) and its forward term
``P(w_j * in_j + b_j)`` (with the max-pool switches) is needed twice: as the forward
drive of ``states[j]`` and, through its switches, for the feedback into ``states[j - 1]``.
It changes only when its input changes. An even/odd sweep changes the even-indexed
states, then the odd-indexed ones, so every term is recomputed exactly once per sweep
(the image's term once per settle) when :class:`SynapseTerms` is told which states moved.

This evaluates the same maps as :meth:`ephw.model.EnergyModel.drives` (checked against it
in ``tests/backends/test_terms.py``), through the model's :class:`~ephw.model.Synapses`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ephw.backends.base import take_rows
from ephw.errors import InputError
from ephw.model import EnergyModel, Synapses
from ephw.model.energy import per_sample_sum


class SynapseTerms:
    """Cached forward terms for a batch ``(B, ...)``.

    Attributes:
        inputs: ``[s^0, s^1, ..., s^N]`` (``s^0`` normalised image; the state entries are the
            tensors the terms were computed from).
        terms: per state layer ``n``: ``P(w_n * in_n) + b_n`` (conv, ``(B, C, H, W)``) or
            ``W_n in_n + b_n`` (dense, ``(B, out)``); ``None`` = stale.
        switches, pre_pool: max-pool argmax indices and pre-pooling spatial size (convs).
    """

    def __init__(self, net: EnergyModel, x: Tensor, states: Sequence[Tensor], ops: Synapses) -> None:
        self.net = net
        self.ops = ops
        self.n_conv = len(net.config.convs)
        self.inputs: list[Tensor] = [net.normalize(x), *states]
        self.terms: list[Tensor | None] = [None] * net.n_states
        self.switches: list[Tensor | None] = [None] * net.n_states
        self.pre_pool: list[torch.Size | None] = [None] * net.n_states

    # ----------------------------------------------------------------- bookkeeping
    def update(self, states: Sequence[Tensor], moved: Iterable[int]) -> None:
        """Record new values of the state layers ``moved`` (0-based); the terms they feed go stale."""
        for i in moved:
            self.inputs[i + 1] = states[i]
            if i + 1 < len(self.terms):
                self.terms[i + 1] = None

    def select(self, keep: Tensor) -> SynapseTerms:
        """The cache of the samples ``keep`` (indices ``(B_kept,)``), in place."""
        self.inputs = [take_rows(t, keep) for t in self.inputs]
        self.terms = [None if t is None else take_rows(t, keep) for t in self.terms]
        self.switches = [None if t is None else take_rows(t, keep) for t in self.switches]
        return self

    def _term(self, j: int) -> Tensor:
        if self.terms[j] is None:
            src = self.inputs[j]
            if j < self.n_conv:
                pool = self.net.config.convs[j].pool
                a = self.ops.forward(j, src)
                self.terms[j], self.switches[j] = F.max_pool2d(a, pool, pool, return_indices=True)
                self.pre_pool[j] = a.shape[-2:]
            else:
                self.terms[j] = self.ops.forward(j, src.flatten(1))
        return self.terms[j]

    # ----------------------------------------------------------------- physics
    def _adjoint(self, j: int, v: Tensor) -> Tensor:
        """``w~_j * P^{-1}(v)`` (conv) or ``W_j^T v`` (dense), shaped like synapse ``j``'s input."""
        src = self.inputs[j]
        if j < self.n_conv:
            self._term(j)  # the switches
            pool = self.net.config.convs[j].pool
            up = F.max_unpool2d(v, self.switches[j], pool, pool, output_size=self.pre_pool[j])
            return self.ops.adjoint(j, up, src)
        return self.ops.adjoint(j, v.flatten(1), src.flatten(1)).view_as(src)

    def drive(self, i: int, beta: float = 0.0, target: Tensor | None = None) -> Tensor:
        """``dPhi/ds^i`` (0-based ``i``) at the recorded states."""
        u = self._term(i)
        if i + 1 < self.net.n_states:
            u = u + self._adjoint(i + 1, self.inputs[i + 2])
        if beta != 0.0 and i == self.net.n_states - 1:
            u = u - beta * self._nudge(target)[1]
        return u

    def phi(self, beta: float = 0.0, target: Tensor | None = None) -> Tensor:
        """``Phi`` per sample ``(B,)`` at the recorded states (computes any stale term)."""
        states = self.inputs[1:]
        phi = states[0].new_zeros(states[0].shape[0])
        for i, s in enumerate(states):
            phi = phi + per_sample_sum(s * self._term(i))
        if beta != 0.0:
            phi = phi - beta * self._nudge(target)[0]
        return phi

    def _nudge(self, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """Loss ``L`` per sample and ``dL/ds^N`` (as :meth:`EnergyModel._nudge`)."""
        net = self.net
        out = self.inputs[-1]
        if target is None:
            raise InputError("a non-zero beta needs a target")
        if net.config.output == "mse":
            diff = out - one_hot(target, out)
            return 0.5 * diff.pow(2).sum(1), diff
        readout = net.config.n_synapses - 1
        logits = self.ops.forward(readout, out.flatten(1))
        loss = F.cross_entropy(logits, target, reduction="none")
        dlogits = torch.softmax(logits, 1) - one_hot(target, logits)
        dout = self.ops.adjoint(readout, dlogits.to(out.dtype), out.flatten(1)).view_as(out)
        return loss, dout


def one_hot(target: Tensor, like: Tensor) -> Tensor:
    """Class indices ``(B,)`` or probabilities ``(B, K)`` as ``(B, K)`` in ``like``'s dtype."""
    if target.is_floating_point():
        return target.to(like.dtype)
    return F.one_hot(target, like.shape[1]).to(like.dtype)
