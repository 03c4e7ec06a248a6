"""The EP-CNN energy model (seed paper Eq. 1-2; Laborieux et al. 2021).

States ``s^1 .. s^N`` follow the input ``s^0 = (x - mean) / std``. With ``P`` the
max pooling of a conv layer and ``g`` the gain of the hard sigmoid
``sigma(u) = clamp(g u, 0, 1)``, the primitive function and the energy are

    Phi(s)  = sum_n < s^n, P(w_n * s^{n-1} + b_n) >            (conv layers)
            + sum_n < s^n, W_n s^{n-1} + b_n >                   (dense layers)
            - beta * L(s, target)                                (nudging)
    E(s)    = sum_n |s^n|^2 / (2 g) - Phi(s)

The fixed points of the dynamics ``ds/dt = -s + sigma(dPhi/ds)`` (Eq. 2) are the
minimisers of ``E`` over the box ``[0, 1]``. ``dPhi/ds^n`` -- the *drive* -- is the
forward term ``P(w_n * s^{n-1})`` plus the feedback ``w~_{n+1} * P^{-1}(s^{n+1})``
(transposed conv through the pooling switches). :meth:`EnergyModel.drives` computes
it for every layer in one pass, without autograd.

The model knows nothing about how the energy is minimised: that is a backend's job
(:mod:`ephw.backends`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw.errors import InputError
from ephw.model.config import ModelConfig
from ephw.model.layers import input_stats, synapse_layers
from ephw.model.synapses import DigitalSynapses, Synapses

States = list[Tensor]


@dataclass
class _Forward:
    """Forward terms of every synapse layer at the current states."""

    terms: list[Tensor]  # P(w_j * in_j) + b_j (conv) or W_j in_j + b_j (dense) of every layer feeding a state
    switches: list[Tensor | None]  # max-pool argmax indices of conv layers, None for dense
    pre_pool: list[torch.Size | None]  # spatial size before pooling, conv layers only
    inputs: list[Tensor]  # input of every synapse layer: s^0 (normalised x), s^1, ...
    ops: Synapses  # how the linear maps were evaluated


def per_sample_sum(t: Tensor) -> Tensor:
    """Sum over all but the batch dim, ``(B, ...) -> (B,)``, without ``flatten`` (which copies channels-last)."""
    return t.sum(tuple(range(1, t.dim()))) if t.dim() > 1 else t


def channels_last(t: Tensor) -> Tensor:
    """4-d tensors in channels-last memory format (the layout ephw computes in); others unchanged."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


#: How far outside [0, 1] an image value may lie before :meth:`EnergyModel.check_input` refuses it.
IMAGE_SLACK = 0.5


class EnergyModel(nn.Module):
    """Weights and topology of an EP-CNN; computes Phi, E and the drives exactly.

    Tensors: images ``x`` are ``(B, C, H, W)`` in ``[0, 1]``; states are a list of
    ``(B, *shape)`` tensors with shapes :meth:`state_shapes`; per-sample scalars
    (Phi, E, losses) are ``(B,)``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.convs, self.dense = synapse_layers(config)
        mean, std = input_stats(config)
        self.register_buffer("input_mean", mean)
        self.register_buffer("input_std", std)
        self._feature_shapes = config.feature_shapes()
        self._state_shapes = config.state_shapes()

    # ------------------------------------------------------------------ topology
    @property
    def synapses(self) -> list[nn.Module]:
        """Weight layers in order: convs, hidden dense layers, output layer/readout."""
        return [*self.convs, *self.dense]

    @property
    def gain(self) -> float:
        return self.config.gain

    @property
    def n_states(self) -> int:
        return len(self._state_shapes)

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shape of every dynamic layer."""
        return list(self._state_shapes)

    def activation(self, u: Tensor) -> Tensor:
        """Hard sigmoid ``clamp(g u, 0, 1)``."""
        return (u * self.gain).clamp(0.0, 1.0)

    def zeros(self, x: Tensor) -> States:
        """The null state for a batch of images ``x``."""
        return [channels_last(x.new_zeros((x.shape[0], *shape))) for shape in self._state_shapes]

    # ------------------------------------------------------------------ inputs
    def check_input(self, x: Tensor) -> None:
        """Raise :class:`InputError` unless ``x`` is a finite ``(B, C, H, W)`` float batch in ``[0, 1]``.

        Values up to :data:`IMAGE_SLACK` outside ``[0, 1]`` pass (rounding of attacks and
        corruptions); images in 0..255, or normalised ones, are refused.
        """
        want = tuple(self.config.in_shape)
        if not isinstance(x, Tensor):
            raise InputError(f"images must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise InputError(f"expected images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"images must be floating point in [0, 1], got dtype {x.dtype}")
        if not torch.isfinite(x).all():
            raise InputError("images contain NaN or infinite values")
        if x.numel():
            lo, hi = float(x.min()), float(x.max())
            if lo < -IMAGE_SLACK or hi > 1 + IMAGE_SLACK:  # 0..255 images, or already normalised ones
                raise InputError(
                    f"images must lie in [0, 1], these range over [{lo:.4g}, {hi:.4g}] "
                    "(divide 0..255 images by 255; the model normalises them itself)"
                )

    def check_states(self, states: Sequence[Tensor], batch: int) -> None:
        """Raise :class:`InputError` unless ``states`` match this model and batch size."""
        if len(states) != self.n_states:
            raise InputError(f"expected {self.n_states} state tensors, got {len(states)}")
        for i, (s, shape) in enumerate(zip(states, self._state_shapes)):
            if tuple(s.shape) != (batch, *shape):
                raise InputError(f"state {i + 1} must have shape {(batch, *shape)}, got {tuple(s.shape)}")
            if not torch.isfinite(s).all():
                raise InputError(f"state {i + 1} contains NaN or infinite values")

    def normalize(self, x: Tensor) -> Tensor:
        """The input layer ``s^0 = (x - mean) / std``."""
        return (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)

    # ------------------------------------------------------------------ physics
    @property
    def digital(self) -> DigitalSynapses:
        """Exact evaluation of the synapses (the default of every method taking ``synapses``)."""
        return DigitalSynapses(self.synapses)

    def _forward(self, x: Tensor, states: Sequence[Tensor], ops: Synapses) -> _Forward:
        inp = self.normalize(x)
        terms: list[Tensor] = []
        switches: list[Tensor | None] = []
        pre: list[torch.Size | None] = []
        for j, spec in enumerate(self.config.convs):
            a = ops.forward(j, inp if j == 0 else states[j - 1])
            pooled, idx = F.max_pool2d(a, spec.pool, spec.pool, return_indices=True)
            terms.append(pooled)
            switches.append(idx)
            pre.append(a.shape[-2:])
        # a softmax readout is not a state: its forward term is only needed when nudging
        for j in range(len(self.convs), len(self.convs) + len(self.dense) - (self.config.output == "softmax")):
            terms.append(ops.forward(j, (inp if j == 0 else states[j - 1]).flatten(1)))
            switches.append(None)
            pre.append(None)
        return _Forward(terms, switches, pre, [inp, *states], ops)

    def _adjoint(self, j: int, v: Tensor, fwd: _Forward) -> Tensor:
        """Transpose of synapse ``j`` (through its pooling switches) applied to ``v``.

        Returns a tensor shaped like synapse ``j``'s input state (``s^j`` in 1-based
        notation), i.e. ``w~_j * P^{-1}(v)`` for convs and ``W_j^T v`` for dense layers.
        """
        src = fwd.inputs[j]
        if j < len(self.convs):
            spec = self.config.convs[j]
            up = F.max_unpool2d(v, fwd.switches[j], spec.pool, spec.pool, output_size=fwd.pre_pool[j])
            return fwd.ops.adjoint(j, up, src)
        return fwd.ops.adjoint(j, v.flatten(1), src.flatten(1)).view_as(src)

    def _nudge(self, fwd: _Forward, states: Sequence[Tensor], target: Tensor | None) -> tuple[Tensor, Tensor]:
        """Loss ``L`` per sample and ``dL/ds^N`` for the last state layer."""
        if target is None:
            raise InputError("a non-zero beta needs a target")
        out = states[-1]
        if self.config.output == "mse":
            diff = out - self._one_hot(target, out)
            return 0.5 * diff.pow(2).sum(1), diff
        readout = self.config.n_synapses - 1
        logits = fwd.ops.forward(readout, out.flatten(1))
        loss = F.cross_entropy(logits, target, reduction="none")
        dlogits = torch.softmax(logits, 1) - self._one_hot(target, logits)
        return loss, self._adjoint(readout, dlogits, fwd)

    @staticmethod
    def _one_hot(target: Tensor, like: Tensor) -> Tensor:
        if target.is_floating_point():
            return target.to(like.dtype)
        return F.one_hot(target, like.shape[1]).to(like.dtype)

    def drives(
        self,
        x: Tensor,
        states: Sequence[Tensor],
        beta: float = 0.0,
        target: Tensor | None = None,
        layers: Iterable[int] | None = None,
        synapses: Synapses | None = None,
    ) -> tuple[list[Tensor | None], Tensor]:
        """``dPhi/ds^n`` for every layer (or only ``layers``, 0-based) and ``Phi`` itself.

        Args:
            x: images ``(B, C, H, W)`` in ``[0, 1]``.
            states: ``N`` tensors ``(B, *state_shape_n)``.
            beta: nudging strength; needs ``target`` (class indices ``(B,)`` or
                one-hot/probabilities ``(B, classes)``) when non-zero.
            layers: which drives to compute; the others are returned as ``None``.
            synapses: how the linear maps are evaluated (default: exact, digital).

        Returns:
            ``(drives, phi)`` with ``drives[n]`` shaped like ``states[n]`` and
            ``phi`` of shape ``(B,)``.
        """
        fwd = self._forward(x, states, synapses or self.digital)
        n = self.n_states
        wanted = range(n) if layers is None else layers
        out: list[Tensor | None] = [None] * n
        for i in wanted:
            u = fwd.terms[i]
            if i + 1 < n:
                u = u + self._adjoint(i + 1, states[i + 1], fwd)
            out[i] = u
        phi = self._phi_from(fwd, states)
        if beta != 0.0:
            loss, dloss = self._nudge(fwd, states, target)
            phi = phi - beta * loss
            if out[-1] is not None:
                out[-1] = out[-1] - beta * dloss
        return out, phi

    def _phi_from(self, fwd: _Forward, states: Sequence[Tensor]) -> Tensor:
        phi = states[0].new_zeros(states[0].shape[0])
        for s, t in zip(states, fwd.terms):
            phi = phi + per_sample_sum(s * t)
        return phi

    def phi(
        self,
        x: Tensor,
        states: Sequence[Tensor],
        beta: float = 0.0,
        target: Tensor | None = None,
        synapses: Synapses | None = None,
    ) -> Tensor:
        """The primitive ``Phi`` per sample ``(B,)``, differentiable w.r.t. weights and states."""
        fwd = self._forward(x, states, synapses or self.digital)
        phi = self._phi_from(fwd, states)
        if beta != 0.0:
            phi = phi - beta * self._nudge(fwd, states, target)[0]
        return phi

    def self_energy(self, states: Sequence[Tensor]) -> Tensor:
        """``sum_n |s^n|^2 / (2 g)`` per sample ``(B,)``."""
        return sum(per_sample_sum(s.pow(2)) for s in states) / (2.0 * self.gain)

    def energy(
        self,
        x: Tensor,
        states: Sequence[Tensor],
        beta: float = 0.0,
        target: Tensor | None = None,
        synapses: Synapses | None = None,
    ) -> Tensor:
        """The energy ``E = sum |s|^2 / (2g) - Phi`` per sample ``(B,)``."""
        return self.self_energy(states) - self.phi(x, states, beta, target, synapses)

    # ------------------------------------------------------------------ readout
    def logits(self, states: Sequence[Tensor], synapses: Synapses | None = None) -> Tensor:
        """Class scores ``(B, classes)``: the readout of ``s^N`` (softmax) or ``y = s^N`` (mse)."""
        last = states[-1]
        if self.config.output == "mse":
            return last
        return (synapses or self.digital).forward(self.config.n_synapses - 1, last.flatten(1))

    def loss(self, states: Sequence[Tensor], target: Tensor) -> Tensor:
        """Per-sample loss at the states ``(B,)``: cross-entropy (softmax) or ``|y - t|^2 / 2`` (mse)."""
        logits = self.logits(states)
        if self.config.output == "mse":
            return 0.5 * (logits - self._one_hot(target, logits)).pow(2).sum(1)
        return F.cross_entropy(logits, target, reduction="none")

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - guidance only
        raise TypeError(
            "an EnergyModel has no feed-forward pass: settle it with ephw.settle(model, x, backend=...) "
            "and read model.logits(result.states)"
        )
