"""The EP-CNN's synapses on aihwkit analog inference tiles: forward and transposed reads.

Each synapse layer's weight matrix (conv kernels unrolled to ``C_out x C_in k k``, as ephw's
crossbar backend does) is cut into tiles of at most ``mapping.max_input_size`` inputs x
``mapping.max_output_size`` outputs; each tile is an aihwkit ``TorchInferenceTile`` that is
programmed (``program_weights``: programming noise, drift exponents, drift-compensation baseline)
and drifted to the read time (``drift_weights(t_inference)``: drift and the 1/f noise accumulated
until then, one draw per chip and ``t``). Then

- a forward read ``x -> x Wᵀ`` is the tile module's own forward in eval mode (input processing,
  forward ``IOParameters`` MVM, mapping scales, global drift compensation ``α``);
- a transposed read ``v -> v W`` goes through the same programmed tile weights with aihwkit's
  backward periphery: ``pre_backward`` (mapping scales), ``AnalogMVM.matmul(..., trans=True)``
  with the backward ``IOParameters``, ``post_backward``; then ``α`` (ephw's choice: aihwkit
  applies ``α`` in forward only, since its backward pass serves training; a chip reading its
  array transposed for EP's feedback applies the same per-tile gain).

Convolutions are im2col (``unfold``) + tile read + reshape, transposed convolutions tile
transpose-read + col2im (``fold``). Biases, pooling and the activation stay digital.

``reads="linear"`` (only with perfect IO, where a tile read is exactly linear in its input):
each matrix is read once per programming through the tiles with one-hot inputs, forward and
transposed, and the settle's reads are convolutions / matmuls with those two read-out matrices —
the same numbers as reading the tiles every time (to float rounding), at the cost of ephw's
digital convolutions instead of im2col.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from torch import Tensor, nn

from ephw.errors import BackendError
from ephw.model import EnergyModel
from ephw.model.energy import channels_last
from ephw.model.synapses import conv_input_grad
from ephw_aihwkit.config import AIHWKitOptions


def unrolled(layer: nn.Module) -> Tensor:
    """The weight matrix a layer's tiles store: ``(C_out, C_in k k)`` for convs, ``(out, in)`` for dense."""
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def tile_seed(chip_seed: int, layer: int, row: int, col: int, programming: int) -> int:
    """The torch seed of one tile's programming and drift draws (independent per tile and programming)."""
    state = np.random.SeedSequence([chip_seed, layer, row, col, programming]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run aihwkit's draws (it uses torch's global generator) from ``seed``, leaving the global state as it was."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class AnalogMatrix:
    """One weight matrix ``W`` ``(out, in)`` on a grid of aihwkit inference tiles, read both ways.

    Args:
        weight: ``(out, in)``.
        rpu_config: the tiles' configuration (a ``TorchInferenceRPUConfig``).
        options: read time and chip seed.
        layer: the network layer (seeds its tiles' draws).
    """

    def __init__(
        self, weight: Tensor, rpu_config: TorchInferenceRPUConfig, options: AIHWKitOptions, layer: int = 0
    ) -> None:
        self.rpu_config = rpu_config
        self.options = options
        self.layer = layer
        self.programming = 0
        self.out_size, self.in_size = weight.shape
        rows, cols = rpu_config.mapping.max_input_size, rpu_config.mapping.max_output_size
        self.in_blocks = [(i, min(i + rows, self.in_size)) for i in range(0, self.in_size, rows)]
        self.out_blocks = [(o, min(o + cols, self.out_size)) for o in range(0, self.out_size, cols)]
        self.tiles: list[list[TorchInferenceTile]] = []
        for o0, o1 in self.out_blocks:
            row: list[TorchInferenceTile] = []
            for i0, i1 in self.in_blocks:
                tile = rpu_config.tile_class(o1 - o0, i1 - i0, rpu_config, bias=False)
                if weight.device.type == "cuda":
                    tile = tile.cuda(weight.device)
                row.append(tile.eval())
            self.tiles.append(row)
        self.program(weight)

    @property
    def dtype(self) -> torch.dtype:
        return self.tiles[0][0].get_dtype()

    @torch.no_grad()
    def program(self, weight: Tensor) -> None:
        """Write ``weight`` onto the tiles (a fresh programming draw), then drift them to the read time."""
        for a, (o0, o1) in enumerate(self.out_blocks):
            for b, (i0, i1) in enumerate(self.in_blocks):
                tile = self.tiles[a][b]
                seed = tile_seed(self.options.chip_seed, self.layer, a, b, self.programming)
                with seeded(seed, weight.device):
                    tile.set_weights(weight[o0:o1, i0:i1].to(self.dtype))
                    tile.program_weights(from_reference=False)  # the weights just set, not the first ones
                    tile.drift_weights(self.options.t_inference)
        self.programming += 1

    @torch.no_grad()
    def read(self, x: Tensor) -> Tensor:
        """Forward read ``(N, in) -> (N, out) ≈ x @ Wᵀ`` through the tiles."""
        xs = x.to(self.dtype)
        out = []
        for a in range(len(self.out_blocks)):
            y = None
            for b, (i0, i1) in enumerate(self.in_blocks):
                part = self.tiles[a][b](xs[:, i0:i1])
                y = part if y is None else y + part
            out.append(y)
        return torch.cat(out, 1).to(x.dtype)

    @torch.no_grad()
    def read_transposed(self, v: Tensor) -> Tensor:
        """Transposed read ``(N, out) -> (N, in) ≈ v @ W`` through the same programmed tiles."""
        vs = v.to(self.dtype)
        out = []
        for b in range(len(self.in_blocks)):
            z = None
            for a, (o0, o1) in enumerate(self.out_blocks):
                tile = self.tiles[a][b]
                d = tile.pre_backward(vs[:, o0:o1], 1)
                part = AnalogMVM.matmul(tile.tile.weight, d, tile.rpu_config.backward, trans=True, is_test=True)
                part = tile.post_backward(part, 1)
                if tile.rpu_config.drift_compensation is not None:
                    part = part * tile.alpha
                z = part if z is None else z + part
            out.append(z)
        return torch.cat(out, 1).to(v.dtype)

    @property
    def device(self) -> torch.device:
        return self.tiles[0][0].tile.weight.device

    @torch.no_grad()
    def effective_weights(self) -> Tensor:
        """``(out, in)``: what the tiles represent now (forward reads of one-hot inputs)."""
        return self.read(torch.eye(self.in_size, dtype=self.dtype, device=self.device)).T

    @torch.no_grad()
    def effective_weights_transposed(self) -> Tensor:
        """``(out, in)``: what the transposed reads see now (transposed reads of one-hot inputs)."""
        return self.read_transposed(torch.eye(self.out_size, dtype=self.dtype, device=self.device))

    @property
    def linear(self) -> bool:
        """Whether a read is exactly linear in its input (perfect IO both ways)."""
        cfg = self.rpu_config
        return bool(cfg.forward.is_perfect and cfg.backward.is_perfect)


class AIHWKitSynapses:
    """The synapse operators of ``net`` (ephw's ``Synapses`` protocol) on aihwkit tiles, one matrix per layer."""

    def __init__(
        self, net: EnergyModel, options: AIHWKitOptions, rpu_config: TorchInferenceRPUConfig, reads: str = "tile"
    ) -> None:
        self.layers = net.synapses
        self.matrices = [AnalogMatrix(unrolled(m), rpu_config, options, layer=j) for j, m in enumerate(self.layers)]
        self.biases = [m.bias.detach().clone() for m in self.layers]
        if reads == "linear" and not all(m.linear for m in self.matrices):
            raise BackendError("aihwkit: reads='linear' needs perfect IO (io='perfect'): noisy reads are not linear")
        self.reads = reads
        self._linear: list[tuple[Tensor, Tensor]] | None = None

    def reprogram(self) -> None:
        """Write the layers' current weights onto the same tiles (fresh programming draws)."""
        for matrix, layer in zip(self.matrices, self.layers):
            matrix.program(unrolled(layer))
        self.biases = [m.bias.detach().clone() for m in self.layers]
        self._linear = None

    def _read_out(self, j: int) -> tuple[Tensor, Tensor]:
        """Layer ``j``'s forward and transposed read-out matrices, shaped (and laid out) as its weight."""
        if self._linear is None:
            self._linear = []
            for layer, matrix in zip(self.layers, self.matrices):
                dtype, shape = layer.weight.dtype, layer.weight.shape
                fwd = matrix.effective_weights().to(dtype).view(shape)
                bwd = matrix.effective_weights_transposed().to(dtype).view(shape)
                if isinstance(layer, nn.Conv2d):
                    fwd, bwd = channels_last(fwd), channels_last(bwd)
                self._linear.append((fwd, bwd))
        return self._linear[j]

    def forward(self, j: int, src: Tensor) -> Tensor:
        layer, matrix = self.layers[j], self.matrices[j]
        if self.reads == "linear":
            w = self._read_out(j)[0]
            if isinstance(layer, nn.Conv2d):
                return F.conv2d(src, w, self.biases[j], padding=layer.padding)
            return F.linear(src, w, self.biases[j])
        if not isinstance(layer, nn.Conv2d):
            return matrix.read(src) + self.biases[j]
        k, p = layer.kernel_size, layer.padding
        cols = F.unfold(src, k, padding=p)  # (B, C_in k k, L)
        b, n, length = cols.shape
        out = matrix.read(cols.transpose(1, 2).reshape(b * length, n))  # (B L, C_out)
        h = src.shape[2] + 2 * p[0] - k[0] + 1
        w = src.shape[3] + 2 * p[1] - k[1] + 1
        out = out.view(b, h, w, -1).permute(0, 3, 1, 2)  # channels-last memory, as ephw's states
        return out + self.biases[j].view(1, -1, 1, 1)

    def adjoint(self, j: int, v: Tensor, src: Tensor) -> Tensor:
        layer, matrix = self.layers[j], self.matrices[j]
        if self.reads == "linear":
            w = self._read_out(j)[1]
            if isinstance(layer, nn.Conv2d):
                return conv_input_grad(v, src, w, layer.padding[0])
            return v @ w
        if not isinstance(layer, nn.Conv2d):
            return matrix.read_transposed(v)
        b, c, h, w = v.shape
        cols = matrix.read_transposed(v.permute(0, 2, 3, 1).reshape(b * h * w, c))  # (B L, C_in k k)
        cols = cols.view(b, h * w, -1).transpose(1, 2)
        return F.fold(cols, src.shape[-2:], layer.kernel_size, padding=layer.padding)
