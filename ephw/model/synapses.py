"""How the linear part of each synapse layer is evaluated.

The energy model fixes *which* linear maps connect the layers (``w_j * s + b_j`` and
its transpose); a :class:`Synapses` object says *how* they are computed. The default,
:class:`DigitalSynapses`, uses exact torch convolutions. A hardware backend supplies
its own (e.g. reads of a simulated crossbar) without the model knowing about it.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class Synapses(Protocol):
    """The two linear operators of every synapse layer ``j`` (convs first, then dense)."""

    def forward(self, j: int, src: Tensor) -> Tensor:
        """``w_j * src + b_j``: conv layers return the pre-pooling map ``(B, C_out, H', W')``,
        dense layers ``(B, out)`` (``src`` is flattened by the caller)."""
        ...

    def adjoint(self, j: int, v: Tensor, src: Tensor) -> Tensor:
        """The transpose ``w~_j * v`` (no bias), shaped like the layer's input ``src``.

        For convs ``v`` is the unpooled ``(B, C_out, H', W')`` map; for dense layers
        ``v`` is ``(B, out)`` and ``src`` is the flattened ``(B, in)`` input.
        """
        ...


def conv_input_grad(v: Tensor, like: Tensor, weight: Tensor, padding: int) -> Tensor:
    """The transposed convolution ``w~ * v``, shaped like the conv's input ``like``.

    Computed as the input-gradient of the convolution: on CPU this runs oneDNN's
    backward-data kernel, markedly faster than ``F.conv_transpose2d``'s generic path.
    """
    pad = [padding, padding]
    return torch.ops.aten.convolution_backward(
        v, like, weight, None, [1, 1], pad, [1, 1], False, [0, 0], 1, [True, False, False]
    )[0]


class DigitalSynapses:
    """Exact evaluation with the model's own ``nn.Conv2d`` / ``nn.Linear`` layers."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers

    def forward(self, j: int, src: Tensor) -> Tensor:
        return self.layers[j](src)

    def adjoint(self, j: int, v: Tensor, src: Tensor) -> Tensor:
        layer = self.layers[j]
        if isinstance(layer, nn.Conv2d):
            return conv_input_grad(v, src, layer.weight, layer.padding[0])
        return v @ layer.weight
