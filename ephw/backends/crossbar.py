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

from ephw.backends.chip import ProgrammedChip
from ephw.backends.euler import Euler
from ephw.crossbar import CrossbarArray, CrossbarParams, load_params
from ephw.errors import BackendError
from ephw.model import EnergyModel
from ephw.model.synapses import conv_input_grad
from ephw.model.tensors import channels_last


def unrolled(layer: nn.Module) -> Tensor:
    """The weight matrix an array stores: ``(C_out, C_in k k)`` for convs, ``(out, in)`` for dense."""
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def _noise_like(array: CrossbarArray, t: Tensor) -> Tensor:
    """Read-noise draws shaped like the 4-D tensor ``t``, laid out as ``t`` is (channels-last)."""
    b, c, h, w = t.shape
    return array.read_noise((b, h, w, c)).permute(0, 3, 1, 2)  # iid draws: only the layout changes


class CrossbarSynapses:
    """The synapse operators of ``net`` evaluated on programmed crossbars (one per layer)."""

    def __init__(self, net: EnergyModel, params: CrossbarParams) -> None:
        self.layers = net.synapses
        self.arrays = [CrossbarArray.program(unrolled(m), params, layer=j) for j, m in enumerate(self.layers)]
        self.biases = [m.bias.detach().clone() for m in self.layers]
        self._kernel_cache: dict[int, tuple[Tensor, tuple[Tensor, Tensor | None]]] = {}

    def reprogram(self) -> None:
        """Write the layers' current weights onto the same chip (fresh programming draws)."""
        for array, layer in zip(self.arrays, self.layers):
            array.reprogram(unrolled(layer))
        self.biases = [m.bias.detach().clone() for m in self.layers]

    def _kernels(self, j: int, transposed: bool = False) -> tuple[Tensor, Tensor | None] | None:
        """Layer ``j``'s effective ``(W, V)`` as channels-last conv kernels, or ``None`` for a non-linear read.

        Cached per read state of the array (a new drift time or programming gives new kernels),
        so the per-step reads do not re-layout the weights.
        """
        array, shape = self.arrays[j], self.layers[j].weight.shape
        linear = array.linear_read(transposed=transposed)
        if linear is None:
            return None
        cached = self._kernel_cache.get(j)  # both directions read the same effective weights
        if cached is None or cached[0] is not linear[0]:
            w, v = (None if t is None else channels_last(t.view(shape)) for t in linear)
            cached = self._kernel_cache[j] = (linear[0], (w, v))
        return cached[1]

    def forward(self, j: int, src: Tensor) -> Tensor:
        layer, array = self.layers[j], self.arrays[j]
        if not isinstance(layer, nn.Conv2d):
            return array.read(src) + self.biases[j]
        kernels = self._kernels(j)
        if kernels is not None:  # the same read, evaluated as convolutions (no im2col)
            w_eff, v_eff = kernels
            out = F.conv2d(src, w_eff, padding=layer.padding)
            if v_eff is not None:
                var = F.conv2d(src * src, v_eff, padding=layer.padding)
                out.addcmul_(var.clamp_(min=0).sqrt_(), _noise_like(array, out))
            return out.add_(self.biases[j].view(1, -1, 1, 1))
        k, p = layer.kernel_size, layer.padding
        cols = F.unfold(src, k, padding=p)  # (B, C_in k k, L)
        out = array.read(cols.transpose(1, 2))  # (B, L, C_out)
        h = src.shape[2] + 2 * p[0] - k[0] + 1
        w = src.shape[3] + 2 * p[1] - k[1] + 1
        return out.transpose(1, 2).reshape(src.shape[0], -1, h, w) + self.biases[j].view(1, -1, 1, 1)

    def adjoint(self, j: int, v: Tensor, src: Tensor) -> Tensor:
        layer, array = self.layers[j], self.arrays[j]
        if not isinstance(layer, nn.Conv2d):
            return array.read_transposed(v)
        kernels = self._kernels(j, transposed=True)
        if kernels is not None:
            w_eff, v_eff = kernels
            pad = layer.padding[0]
            out = conv_input_grad(v, src, w_eff, pad)
            if v_eff is not None:
                var = conv_input_grad(v * v, src, v_eff, pad)
                out.addcmul_(var.clamp_(min=0).sqrt_(), _noise_like(array, out))
            return out
        cols = array.read_transposed(v.flatten(2).transpose(1, 2))  # (B, L, C_in k k)
        return F.fold(cols.transpose(1, 2), src.shape[-2:], layer.kernel_size, padding=layer.padding)


class Crossbar(Euler):
    """Euler dynamics with every synaptic read going through simulated memristor crossbars.

    Args:
        preset: ``ideal``, ``pcm``, ``rram-wan2022`` or ``rram-illustrative`` (:data:`ephw.crossbar.PRESETS`).
        file: TOML/JSON file of parameters applied on top of the preset.
        overrides: ``"section.field=value"`` strings applied last (e.g. ``read_noise.proportional=0.02``).
        params: ready :class:`CrossbarParams` instead of preset/file/overrides.
        dt: Euler step size.
        reprogram_every: during training, write the updated weights onto the chip only
            after this many weight updates (between them the chip keeps the old ones).

    The chip is programmed once per model and reused across settle calls. When the
    weights change (a training update), they are re-programmed onto the same chip
    with fresh programming draws -- hardware-in-the-loop EP training.
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
        reprogram_every: int = 1,
    ) -> None:
        super().__init__(dt)
        self.chip = ProgrammedChip(lambda net: CrossbarSynapses(net, self.params), reprogram_every, "crossbar")
        self.reprogram_every = self.chip.reprogram_every
        self.params = params if params is not None else load_params(preset, file, list(overrides))
        if self.params.adc_forward.calibrated or self.params.adc_transposed.calibrated:
            raise BackendError(
                "crossbar: ADC calibration needs calibration inputs, which a settling network does not have; "
                "use a fixed adc bound here (calibration: ephw.crossbar.deploy, CrossbarArray.calibrate)"
            )
        if self.params.read_noise.enabled:
            # reads are stochastic: also stop a sample once its residual is stationary
            self.plateau_window = 20

    def synapses(self, net: EnergyModel) -> CrossbarSynapses:
        return self.chip.synapses(net)
