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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw.errors import InputError
from ephw.model.config import ModelConfig
from ephw.model.layers import input_stats, synapse_layers
from ephw.model.synapses import DigitalSynapses, Synapses
from ephw.model.tensors import channels_last, per_sample_sum
from ephw.model.terms import SynapseTerms, one_hot

States = list[Tensor]


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

    def terms(self, x: Tensor, states: Sequence[Tensor], synapses: Synapses | None = None) -> SynapseTerms:
        """The energy's terms at ``states`` for images ``x`` (evaluated lazily, each once)."""
        return SynapseTerms(self.config, self.normalize(x), states, synapses or self.digital)

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
        wanted = range(self.n_states) if layers is None else layers
        return self.terms(x, states, synapses).drives_and_phi(wanted, beta, target)

    def phi(
        self,
        x: Tensor,
        states: Sequence[Tensor],
        beta: float = 0.0,
        target: Tensor | None = None,
        synapses: Synapses | None = None,
    ) -> Tensor:
        """The primitive ``Phi`` per sample ``(B,)``, differentiable w.r.t. weights and states."""
        return self.terms(x, states, synapses).phi(beta, target)

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
            return 0.5 * (logits - one_hot(target, logits)).pow(2).sum(1)
        return F.cross_entropy(logits, target, reduction="none")

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - guidance only
        raise TypeError(
            "an EnergyModel has no feed-forward pass: settle it with ephw.settle(model, x, backend=...) "
            "and read model.logits(result.states)"
        )
