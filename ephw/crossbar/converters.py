"""DAC / ADC: uniform quantisers with saturation (see :class:`~ephw.crossbar.params.Converter`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ephw.crossbar.params import Converter
from ephw.errors import InputError


def convert(x: Tensor, conv: Converter, dim: int = -1) -> tuple[Tensor, Tensor | float | None]:
    """Split ``x`` into converter codes and their full-scale value: ``output = full_scale·code``.

    Args:
        x: values in the converter's input units, any shape.
        conv: the converter.
        dim: the dimension of one converted vector (a dynamic range is set per vector along it).

    Returns:
        ``(code, full_scale)``: ``code`` has the shape of ``x``, values in ``[−1, 1]``
        (``[0, 1]`` unsigned) on the converter's grid; ``full_scale`` is ``bound`` (a float),
        the per-vector largest magnitude (a tensor broadcastable to ``x``) for a dynamic
        range, or ``None`` for an ideal converter, whose code is ``x`` itself.
    """
    if conv.ideal:
        return x, None
    full_scale: Tensor | float
    if conv.bound is not None:
        full_scale = conv.bound
    else:
        peak = x.abs() if conv.signed else x.clamp(min=0)
        peak = peak.amax(dim=dim, keepdim=True)
        # An all-zero vector has no range; any positive full scale converts it to zeros.
        full_scale = torch.where(peak > 0, peak, torch.ones_like(peak))
    code = (x / full_scale).clamp(-1.0 if conv.signed else 0.0, 1.0)
    n = conv.n_steps
    if n is not None:
        code = torch.round(code * n) / n
    return code, full_scale


def convert_(
    x: Tensor, conv: Converter, dim: int = -1, calibrated: Tensor | None = None
) -> tuple[Tensor, Tensor | float | None]:
    """In-place :func:`convert` for large tensors without autograd: ``output = x'·factor``.

    ``x`` is overwritten with the grid index ``k`` (an integer-valued float, ``|k| <= n``)
    when quantising, or with the clipped code otherwise; ``factor`` is ``full_scale/n``
    (or ``full_scale``), ``None`` when nothing is converted (``x`` untouched: an ideal
    converter, or one with only ``noise``, which the caller adds).

    ``calibrated``: the full scale of a converter with ``calibration`` (positive, broadcastable
    to ``x``), from :meth:`~ephw.crossbar.CrossbarArray.calibrate`.
    """
    if conv.ideal:
        return x, None
    if conv.calibrated:
        if calibrated is None:
            raise InputError("this ADC has calibration on: call calibrate(x) on the array before reading")
        full_scale: Tensor | float = calibrated
    elif conv.bound is not None:
        full_scale = conv.bound
    elif conv.bits is None:
        return x, None  # noise only: no range, no grid
    else:
        peak = x.amax(dim=dim, keepdim=True).clamp_(min=0)
        if conv.signed:
            peak = torch.maximum(peak, x.amin(dim=dim, keepdim=True).neg_())
        full_scale = torch.where(peak > 0, peak, torch.ones_like(peak))
    n = conv.n_steps
    lo = -1.0 if conv.signed else 0.0
    if n is None:
        return x.div_(full_scale).clamp_(lo, 1.0), full_scale
    x.mul_(n / full_scale).clamp_(lo * n, float(n)).round_()
    return x, full_scale / n


def quantize(x: Tensor, conv: Converter, dim: int = -1) -> Tensor:
    """``x`` through the converter, in the units of ``x`` (identity when ideal)."""
    code, full_scale = convert(x, conv, dim)
    return code if full_scale is None else code * full_scale
