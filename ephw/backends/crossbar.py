"""Memristor-crossbar backend: every ``w * s`` and ``w~ * s`` is a read of one simulated array.

Each synapse layer is programmed once onto its own :class:`~ephw.crossbar.CrossbarArray`
(conv kernels unrolled to ``C_out x C_in k k``; convolutions become im2col + array read,
transposed convolutions array transpose-read + col2im), and both directions read the
*same* programmed conductances, as a physical array would. Biases, pooling and the
activation stay in the digital periphery. The dynamics are Euler's (``dt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw.backends.euler import Euler
from ephw.crossbar import CrossbarArray, CrossbarParams, load_params
from ephw.model import EnergyModel


def unrolled(layer: nn.Module) -> Tensor:
    """The weight matrix an array stores: ``(C_out, C_in k k)`` for convs, ``(out, in)`` for dense."""
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


class CrossbarSynapses:
    """The synapse operators of ``net`` evaluated on programmed crossbars (one per layer)."""

    def __init__(self, net: EnergyModel, params: CrossbarParams) -> None:
        self.layers = net.synapses
        self.arrays = [CrossbarArray.program(unrolled(m), params, layer=j) for j, m in enumerate(self.layers)]
        self.biases = [m.bias.detach() for m in self.layers]

    def forward(self, j: int, src: Tensor) -> Tensor:
        layer, array = self.layers[j], self.arrays[j]
        if isinstance(layer, nn.Conv2d):
            k, p = layer.kernel_size, layer.padding
            cols = F.unfold(src, k, padding=p)  # (B, C_in k k, L)
            out = array.read(cols.transpose(1, 2))  # (B, L, C_out)
            h = src.shape[2] + 2 * p[0] - k[0] + 1
            w = src.shape[3] + 2 * p[1] - k[1] + 1
            return out.transpose(1, 2).reshape(src.shape[0], -1, h, w) + self.biases[j].view(1, -1, 1, 1)
        return array.read(src) + self.biases[j]

    def adjoint(self, j: int, v: Tensor, src: Tensor) -> Tensor:
        layer, array = self.layers[j], self.arrays[j]
        if isinstance(layer, nn.Conv2d):
            cols = array.read_transposed(v.flatten(2).transpose(1, 2))  # (B, L, C_in k k)
            return F.fold(cols.transpose(1, 2), src.shape[-2:], layer.kernel_size, padding=layer.padding)
        return array.read_transposed(v)


class Crossbar(Euler):
    """Euler dynamics with every synaptic read going through simulated memristor crossbars.

    Args:
        preset: ``ideal``, ``rram`` or ``pcm`` (:data:`ephw.crossbar.PRESETS`).
        file: TOML/JSON file of parameters applied on top of the preset.
        overrides: ``"section.field=value"`` strings applied last (e.g. ``read_noise.proportional=0.02``).
        params: ready :class:`CrossbarParams` instead of preset/file/overrides.
        dt: Euler step size.

    The chip (programmed conductances) is drawn once per model weights and reused
    across settle calls; changing the weights (training) programs a new chip.
    """

    name = "crossbar"
    description = "Euler dynamics; every forward and transposed read on simulated memristor crossbars"

    def __init__(
        self,
        preset: str = "ideal",
        file: str | Path | None = None,
        overrides: Sequence[str] = (),
        params: CrossbarParams | None = None,
        dt: float = 1.0,
    ) -> None:
        super().__init__(dt)
        self.params = params if params is not None else load_params(preset, file, list(overrides))
        if self.params.read_noise.enabled:
            # reads are stochastic: also stop a sample once its residual is stationary
            self.plateau_window = 20
        self._chip: tuple[tuple[int, ...], CrossbarSynapses] | None = None

    def synapses(self, net: EnergyModel) -> CrossbarSynapses:
        # torch bumps a tensor's _version on every in-place update (optimizer steps)
        key = (id(net), *(p._version for p in net.parameters()))
        if self._chip is None or self._chip[0] != key:
            with torch.no_grad():
                self._chip = (key, CrossbarSynapses(net, self.params))
        return self._chip[1]
