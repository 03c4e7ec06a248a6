"""Per-sample tensor helpers in ephw's memory layout (channels-last 4-d states, batch first)."""

from __future__ import annotations

import torch
from torch import Tensor


def per_sample_sum(t: Tensor) -> Tensor:
    """Sum over all but the batch dim, ``(B, ...) -> (B,)``, without ``flatten`` (which copies channels-last)."""
    return t.sum(tuple(range(1, t.dim()))) if t.dim() > 1 else t


def channels_last(t: Tensor) -> Tensor:
    """4-d tensors in channels-last memory format (the layout ephw computes in); others unchanged."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _sample_rows(t: Tensor) -> Tensor | None:
    """A ``(B, D)`` view of ``t`` whose row ``b`` is sample ``b``'s memory (contiguous or channels-last), else None."""
    if t.is_contiguous():
        return t.view(t.shape[0], -1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(t.shape[0], -1)
    return None


def take_rows(t: Tensor, rows: Tensor) -> Tensor:
    """``t[rows]`` for indices ``rows`` ``(n,)``, in ``t``'s memory layout.

    A row gather of the flat per-sample view: on a channels-last tensor 5-15x faster than
    boolean or advanced indexing (which gathers element by element).
    """
    flat = _sample_rows(t)
    if flat is None:
        return t.index_select(0, rows)
    out = flat.index_select(0, rows)
    if t.is_contiguous():
        return out.view(-1, *t.shape[1:])
    _, c, h, w = t.shape
    return out.view(-1, h, w, c).permute(0, 3, 1, 2)


def put_rows(full: Tensor, rows: Tensor, src: Tensor) -> None:
    """``full[rows] = src`` in place (``src`` cast to ``full``'s dtype), a row scatter where layouts match."""
    src = src.to(full.dtype)
    f, s = _sample_rows(full), _sample_rows(src)
    if f is not None and s is not None and full.is_contiguous() == src.is_contiguous():
        f.index_copy_(0, rows, s)
    else:
        full[rows] = src
