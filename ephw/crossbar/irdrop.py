"""First-order IR drop of a crossbar tile, as a per-device attenuation of the conductance.

Geometry of one tile (``R`` word lines × ``L`` bit lines, ``L = 2·tile_cols`` with the
``G⁺``/``G⁻`` columns of a pair side by side): every word line ``i`` is driven by an
ideal voltage source at its column-0 end, every bit line ``j`` is held at virtual ground
by its sense amplifier at its row-0 end, and adjacent cells are joined by a wire
segment of resistance ``r`` (also between the line end and the first cell).

Linearising the network in ``r`` (first order, superposition of the ideal currents
``I_ij = x_i·G_ij``), the voltage lost along word line ``i`` at cell ``j`` is
``r·Σ_k I_ik·(min(j,k)+1)`` and the voltage gained along bit line ``j`` at cell ``i`` is
``r·Σ_k I_kj·(min(i,k)+1)``. Summing the lost currents over a bit line and exchanging
the sums, the output of every bit line is, to first order in ``r`` and for every input,

    I_j = Σ_i x_i·G_ij·(1 − r·(A_ij + B_ij)),
    A_ij = Σ_k G_ik·(min(j,k)+1)   (word line: the current drawn beyond cell j),
    B_ij = Σ_k G_kj·(min(i,k)+1)   (bit line: the current collected beyond cell i),

so the attenuation does not depend on the input: it grows with the distance of a cell
from the driver and the sense amplifier and with the conductance loading the lines.
We use ``G_eff = G/(1 + r·(A + B))``, which agrees to first order and stays positive
for large drops (it is not accurate there: keep ``r·(A + B) ≪ 1`` for quantitative use).

The transposed read drives the bit lines from the sense-amplifier end and senses the
word lines at the driver end: the same ports, so by reciprocity of a linear resistive
network it sees the same effective conductances (exactly, not only to first order).
Padding cells of a ragged tile have ``G = 0`` and load nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Ω·µS -> dimensionless.
_OHM_MICROSIEMENS = 1e-6


def line_load(g: Tensor, dim: int) -> Tensor:
    """``A_j = Σ_k g_k·(min(j, k) + 1)`` along ``dim`` (units of ``g`` × wire segments), shape of ``g``."""
    n = g.shape[dim]
    shape = [1] * g.dim()
    shape[dim] = n
    steps = torch.arange(1, n + 1, device=g.device, dtype=g.dtype).reshape(shape)
    cum = torch.cumsum(g, dim)
    total = cum.narrow(dim, n - 1, 1)
    # Σ_{k<=j} g_k (k+1) + (j+1) Σ_{k>j} g_k
    return torch.cumsum(g * steps, dim) + steps * (total - cum)


def attenuation(g: Tensor, wire_resistance_ohm: float) -> Tensor:
    """Per-cell factor ``1/(1 + r·(A + B))`` for tiles ``g`` of shape ``(..., R, L)`` in µS.

    Rows (dim −2) are word lines driven at column 0, columns (dim −1) bit lines sensed
    at row 0; ``r`` is the wire resistance per segment in Ω. Returns the shape of ``g``.
    """
    load = line_load(g, -1) + line_load(g, -2)
    return 1.0 / (1.0 + (wire_resistance_ohm * _OHM_MICROSIEMENS) * load)


def pair_attenuation(g: Tensor, wire_resistance_ohm: float) -> Tensor:
    """Attenuation of differential tiles ``g`` ``(2, ..., R, C)`` (``G⁺``, ``G⁻``) laid out as ``(..., R, 2C)``."""
    interleaved = torch.stack((g[0], g[1]), dim=-1).flatten(-2)  # columns c⁺0, c⁻0, c⁺1, ...
    att = attenuation(interleaved, wire_resistance_ohm).unflatten(-1, (g.shape[-1], 2))
    return att.movedim(-1, 0)
