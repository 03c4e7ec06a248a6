"""Feed-forward CNN with the layer structure of an EP-CNN (BP-CNN, Adv-CNN, Distilled BP-CNN).

Layer ``n`` computes ``s~^n = act(P(w_n * s~^{n-1} + b_n))`` for the conv layers (``P``
the max pooling of the EP config) and ``s~^n = act(W_n s~^{n-1} + b_n)`` for the dense
layers, starting from the same normalised input ``s~^0 = (x - mean) / std`` -- exactly the
forward terms of the EP energy without the feedback from layer ``n + 1``. With the EP hard
sigmoid ``clamp(g u, 0, 1)`` (the default), the post-activation states live where the
teacher's fixed-point states do, so they can be matched (Eq. 8) and used to warm-start a
settle (:meth:`EPTopologyCNN.settle_init`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw.errors import ConfigError
from ephw.model import ModelConfig
from ephw.model.layers import input_stats, synapse_layers

#: ``hard-sigmoid``: the EP activation ``clamp(g u, 0, 1)`` (g from the config); ``relu-bn``:
#: BatchNorm + ReLU after every hidden layer (LANL's AdvEP baseline).
CNN_ACTIVATIONS = ("hard-sigmoid", "relu-bn")


@dataclass(frozen=True)
class CNNSpec:
    """Architecture of an :class:`EPTopologyCNN` (stored as JSON in its checkpoint).

    Attributes:
        config: the EP-CNN topology (convs, dense widths, classes, output mode, hard-sigmoid
            gain, input normalisation, and ``init_scale``: the multiple of PyTorch's default init,
            as for the EP model -- with the slope-1/2 hard sigmoid the default init shrinks the
            signal ~3x per layer).
        activation: a key of :data:`CNN_ACTIVATIONS`.
    """

    config: ModelConfig
    activation: str = "hard-sigmoid"
    kind: ClassVar[str] = "cnn"

    def __post_init__(self) -> None:
        if self.activation not in CNN_ACTIVATIONS:
            raise ConfigError(f"unknown CNN activation {self.activation!r}; valid: {', '.join(CNN_ACTIVATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict(), "activation": self.activation}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNNSpec:
        try:
            return cls(ModelConfig.from_dict(d["config"]), d.get("activation", "hard-sigmoid"))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a valid CNN spec: {exc}") from None


class EPTopologyCNN(nn.Module):
    """The feed-forward twin of an EP-CNN.

    ``forward(x)`` maps images ``(B, C, H, W)`` in ``[0, 1]`` to logits ``(B, classes)``;
    ``states(x)`` also returns the hidden states (see there). Parameter names of the weight
    layers (``convs.j``, ``dense.j``) are those of :class:`~ephw.model.EnergyModel`, so
    :meth:`load_teacher_weights` can copy a teacher's weights.
    """

    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        self.spec = spec
        cfg = spec.config
        self.convs, self.dense = synapse_layers(cfg)  # the EnergyModel's layers, names and init
        feats = cfg.feature_shapes()
        n_hidden = len(cfg.convs) + len(cfg.dense)
        if spec.activation == "relu-bn":
            self.norms = nn.ModuleList(
                nn.BatchNorm2d(s[0]) if len(s) == 3 else nn.BatchNorm1d(s[0]) for s in feats[:n_hidden]
            )
        else:
            self.norms = nn.ModuleList()
        mean, std = input_stats(cfg)
        self.register_buffer("input_mean", mean)
        self.register_buffer("input_std", std)

    @property
    def synapses(self) -> list[nn.Module]:
        """Weight layers in order: convs, hidden dense layers, output layer/readout."""
        return [*self.convs, *self.dense]

    def layer_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """One parameter group per synapse layer (its BatchNorm, if any, goes with it): per-layer learning rates."""
        groups = []
        for j, layer in enumerate(self.synapses):
            params = list(layer.parameters())
            if j < len(self.norms):
                params += list(self.norms[j].parameters())
            groups.append((f"layer{j + 1}", params))
        return groups

    @property
    def n_states(self) -> int:
        """Number of states of the teacher's layout: hidden layers, plus the output layer in ``mse`` mode."""
        return len(self.spec.config.state_shapes())

    def _act(self, j: int, u: Tensor) -> Tensor:
        if self.spec.activation == "relu-bn":
            return F.relu(self.norms[j](u))
        return (u * self.spec.config.gain).clamp(0.0, 1.0)

    def states(self, x: Tensor) -> list[Tensor]:
        """Post-activation states in the teacher's layout, then the logits.

        Args:
            x: images ``(B, C, H, W)`` in ``[0, 1]``.

        Returns:
            ``n_states + 1`` tensors: ``(B, *shape)`` for every shape of the teacher's
            ``EnergyModel.state_shapes()`` (conv layers pooled ``(C, H, W)``, dense ``(d,)``;
            in ``mse`` mode the last is the output ``act(u)``, ``(classes,)``), followed by the
            logits ``(B, classes)``: the readout (``softmax`` mode) or the output layer's
            pre-activation ``u`` (``mse`` mode, whose argmax is that of ``act(u)``).
        """
        cfg = self.spec.config
        h = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        out: list[Tensor] = []
        for j, (conv, spec) in enumerate(zip(self.convs, cfg.convs)):
            h = self._act(j, F.max_pool2d(conv(h), spec.pool, spec.pool))
            out.append(h)
        h = h.flatten(1)
        n_conv = len(self.convs)
        for j, layer in enumerate(self.dense[:-1]):
            h = self._act(n_conv + j, layer(h))
            out.append(h)
        logits = self.dense[-1](h)
        if cfg.output == "mse":
            out.append((logits * cfg.gain).clamp(0.0, 1.0))
        return [*out, logits]

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, classes)`` of images ``(B, C, H, W)`` in ``[0, 1]``."""
        return self.states(x)[-1]

    @torch.no_grad()
    def settle_init(self, x: Tensor) -> list[Tensor]:
        """The states of :meth:`states` clamped to ``[0, 1]``, detached: a valid ``init`` for ``ephw.settle``.

        Only meaningful for the teacher the student was distilled from (same ``state_shapes``).
        """
        return [s.clamp(0.0, 1.0) for s in self.states(x)[: self.n_states]]

    @torch.no_grad()
    def load_teacher_weights(self, teacher: nn.Module) -> None:
        """Copy the weights of an ``EnergyModel`` with the same topology (feedback ignored)."""
        for mine, theirs in zip(self.synapses, teacher.synapses):
            if mine.weight.shape != theirs.weight.shape:
                raise ConfigError(f"teacher layer shape {tuple(theirs.weight.shape)} != {tuple(mine.weight.shape)}")
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
