"""Forward terms of every synapse layer, kept across the half-sweeps of layer-parity updates.

Synapse layer ``j`` (convs first, then dense) reads the state below it (``s^0`` = the
normalised image for ``j = 0``, else ``states[j - 1]``, 0-based) and its forward term
``P(w_j * in_j + b_j)`` (with the max-pool switches) is needed twice: as the forward
drive of ``states[j]`` and, through its switches, for the feedback into ``states[j - 1]``.
It changes only when its input changes. An even/odd sweep changes the even-indexed
states, then the odd-indexed ones, so every term is recomputed exactly once per sweep
(the image's term once per settle) when :class:`SynapseTerms` is told which states moved.

This is the one implementation of the energy's terms: :meth:`EnergyModel.drives` and
:meth:`EnergyModel.phi` evaluate all of them at once through it, and the layer-parity
backends keep one across the half-sweeps. The linear maps go through a
:class:`~ephw.model.synapses.Synapses` (exact, or a backend's simulated hardware).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ephw.errors import InputError
from ephw.model.config import ModelConfig
from ephw.model.synapses import Synapses
from ephw.model.tensors import per_sample_sum, take_rows


class SynapseTerms:
    """Cached forward terms for a batch ``(B, ...)``.

    Attributes:
        inputs: ``[s^0, s^1, ..., s^N]`` (``s^0`` normalised image; the state entries are the
            tensors the terms were computed from).
        terms: per state layer ``n``: ``P(w_n * in_n) + b_n`` (conv, ``(B, C, H, W)``) or
            ``W_n in_n + b_n`` (dense, ``(B, out)``); ``None`` = stale.
        switches, pre_pool: max-pool argmax indices and pre-pooling spatial size (convs).
    """

    def __init__(self, config: ModelConfig, inp: Tensor, states: Sequence[Tensor], ops: Synapses) -> None:
        """``inp``: the input layer ``s^0`` (the normalised images ``(B, C, H, W)``); ``states``: ``s^1 .. s^N``."""
        self.config = config
        self.ops = ops
        self.n_conv = len(config.convs)
        self.n_states = len(states)
        self.inputs: list[Tensor] = [inp, *states]
        self.terms: list[Tensor | None] = [None] * self.n_states
        self.switches: list[Tensor | None] = [None] * self.n_states
        self.pre_pool: list[torch.Size | None] = [None] * self.n_states

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
                pool = self.config.convs[j].pool
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
            pool = self.config.convs[j].pool
            up = F.max_unpool2d(v, self.switches[j], pool, pool, output_size=self.pre_pool[j])
            return self.ops.adjoint(j, up, src)
        return self.ops.adjoint(j, v.flatten(1), src.flatten(1)).view_as(src)

    def drive(self, i: int, beta: float = 0.0, target: Tensor | None = None) -> Tensor:
        """``dPhi/ds^i`` (0-based ``i``) at the recorded states."""
        u = self._term(i)
        if i + 1 < self.n_states:
            u = u + self._adjoint(i + 1, self.inputs[i + 2])
        if beta != 0.0 and i == self.n_states - 1:
            u = u - beta * self.nudge(target)[1]
        return u

    def drives_and_phi(
        self, layers: Iterable[int], beta: float = 0.0, target: Tensor | None = None
    ) -> tuple[list[Tensor | None], Tensor]:
        """``dPhi/ds^i`` for ``layers`` (the others ``None``) and ``Phi`` per sample, the loss evaluated once."""
        out: list[Tensor | None] = [None] * self.n_states
        for i in layers:
            out[i] = self.drive(i)
        phi = self.phi()
        if beta != 0.0:
            loss, dloss = self.nudge(target)
            phi = phi - beta * loss
            if out[-1] is not None:
                out[-1] = out[-1] - beta * dloss
        return out, phi

    def phi(self, beta: float = 0.0, target: Tensor | None = None) -> Tensor:
        """``Phi`` per sample ``(B,)`` at the recorded states (computes any stale term)."""
        states = self.inputs[1:]
        phi = states[0].new_zeros(states[0].shape[0])
        for i, s in enumerate(states):
            phi = phi + per_sample_sum(s * self._term(i))
        if beta != 0.0:
            phi = phi - beta * self.nudge(target)[0]
        return phi

    def nudge(self, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """Loss ``L`` per sample ``(B,)`` and ``dL/ds^N`` (shaped like the last state) at the recorded states."""
        out = self.inputs[-1]
        if target is None:
            raise InputError("a non-zero beta needs a target")
        if self.config.output == "mse":
            diff = out - one_hot(target, out)
            return 0.5 * diff.pow(2).sum(1), diff
        readout = self.config.n_synapses - 1
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
