"""Cutting a weight matrix into crossbar tiles and back.

A tile is ``R = tile_rows`` inputs (word lines) × ``C = tile_cols`` outputs (bit-line
pairs). Tiled tensors have shape ``(..., n_tr, n_tc, R, C)`` with
``tiles[..., a, b, r, c] = W[..., b·C + c, a·R + r]`` for ``W`` of shape ``(..., out, in)``;
the last tiles are zero-padded.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def grid(out_features: int, in_features: int, tile_rows: int, tile_cols: int) -> tuple[int, int]:
    """``(n_tr, n_tc)``: tiles along the inputs and along the outputs."""
    return math.ceil(in_features / tile_rows), math.ceil(out_features / tile_cols)


def to_tiles(w: Tensor, tile_rows: int, tile_cols: int) -> Tensor:
    """``(..., out, in)`` -> ``(..., n_tr, n_tc, R, C)``, zero-padded."""
    out_f, in_f = w.shape[-2:]
    n_tr, n_tc = grid(out_f, in_f, tile_rows, tile_cols)
    w = F.pad(w, (0, n_tr * tile_rows - in_f, 0, n_tc * tile_cols - out_f))
    w = w.unflatten(-1, (n_tr, tile_rows)).unflatten(-3, (n_tc, tile_cols))  # (..., n_tc, C, n_tr, R)
    return w.movedim((-4, -3, -2, -1), (-3, -1, -4, -2))


def from_tiles(t: Tensor, out_features: int, in_features: int) -> Tensor:
    """``(..., n_tr, n_tc, R, C)`` -> ``(..., out, in)``, padding dropped."""
    w = t.movedim((-3, -1, -4, -2), (-4, -3, -2, -1))  # (..., n_tc, C, n_tr, R)
    w = w.flatten(-2).flatten(-3, -2)
    return w[..., :out_features, :in_features]


def pad_last(x: Tensor, size: int) -> Tensor:
    """Zero-pad the last dimension of ``x`` to ``size``."""
    return F.pad(x, (0, size - x.shape[-1]))
