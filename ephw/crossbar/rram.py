"""Statistics of RRAM devices as measured on the NeuRRAM chip (Wan et al., Nature 2022).

The numbers are those of IBM aihwkit 1.1.0's ``ReRamWan2022NoiseModel``
(``aihwkit/inference/noise/reram.py``), which approximates the data published in
W. Wan et al., "A compute-in-memory chip based on resistive random-access memory",
Nature 608, 504–512 (2022), https://www.nature.com/articles/s41586-022-04992-8:
the standard deviation of the conductance around its programmed target, read 1 s, 1 day
and 2 days after programming, fitted (by aihwkit, from the paper's figures) with one
4th-order polynomial in ``G_target/g_max`` per time, for ``g_max = 40 µS``
(``prog_coeff_g_max_reference``). No 1/f read-noise data exist for this model (aihwkit's
note: about 1 % short-term read noise, to be added separately).

Only the numbers are taken over. Two choices are ephw's (aihwkit evaluates only at the
three fitted times, with an independent redraw per time):

- between the fitted times σ is interpolated linearly in ``log10 t``; before 1 s it is
  the 1 s value, after 2 days the 2-day value (no data: the relaxation is assumed to have
  saturated, as the 1-day and 2-day fits nearly coincide);
- the deviation is persistent per device: the 1 s polynomial is the programming noise,
  and the later growth is one more persistent draw per device with
  ``σ_relax(t) = sqrt(max(σ(t)² − σ(1 s)², 0))``, so the total deviation from the target
  at ``t`` has exactly the fitted σ(t) and the same chip can be read at any ``t``.

Conductances in µS, times in s.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: ``g_max`` the polynomials were fitted for, µS (aihwkit ``prog_coeff_g_max_reference``).
G_MAX_REF_uS: float = 40.0
#: ``σ(t) = Σ_i c_i·(G_target/g_max)^i`` in µS, ``c_0 .. c_4``, per time since programming (s)
#: (aihwkit's ``coeff_dic``, whose lists are given highest order first and reversed there).
COEFF_uS: dict[float, tuple[float, float, float, float, float]] = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    86_400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
    172_800.0: (0.782, 20.274, -43.507, 37.062, -11.934),
}
#: aihwkit's recommended short-term read noise of this model: ``w_noise ≈ 0.01`` of the
#: weight range, additive constant; per device of a pair that is ``0.01·g_max/sqrt(2)``.
READ_NOISE_WEIGHT_FRACTION: float = 0.01


def _poly(g_target: Tensor, coeff: tuple[float, ...], g_max: float) -> Tensor:
    g = g_target / g_max
    sigma = torch.zeros_like(g)
    for c in reversed(coeff):
        sigma = sigma * g + c
    return sigma.clamp(min=0.0)


def sigma_at(g_target: Tensor, g_max: float, t_seconds: float) -> Tensor:
    """Total σ (µS) of the conductance around its target ``g_target`` (µS) at ``t_seconds`` after programming.

    The fitted polynomials at 1 s, 1 day and 2 days, interpolated linearly in ``log10 t``
    between them and held constant outside. As in aihwkit, the polynomial is evaluated in
    ``G/g_max`` and not rescaled with ``g_max`` (aihwkit's ``coeff_g_max_reference`` equals
    ``g_max``); the preset uses the fitted ``g_max = 40 µS``.
    """
    times = sorted(COEFF_uS)
    if t_seconds <= times[0]:
        return _poly(g_target, COEFF_uS[times[0]], g_max)
    if t_seconds >= times[-1]:
        return _poly(g_target, COEFF_uS[times[-1]], g_max)
    for lo, hi in zip(times, times[1:]):
        if lo <= t_seconds <= hi:
            w = (math.log10(t_seconds) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
            return (1 - w) * _poly(g_target, COEFF_uS[lo], g_max) + w * _poly(g_target, COEFF_uS[hi], g_max)
    raise AssertionError("unreachable")


def programming_sigma(g_target: Tensor, g_max: float) -> Tensor:
    """Programming-noise σ (µS): the 1 s polynomial (aihwkit ``apply_programming_noise_to_conductance``)."""
    return sigma_at(g_target, g_max, 1.0)


def relaxation_sigma(g_target: Tensor, g_max: float, t_seconds: float) -> Tensor:
    """σ (µS) of the persistent relaxation added to the programmed conductance by time ``t_seconds``.

    ``sqrt(max(σ(t)² − σ(1 s)², 0))``: with the programming noise, the total deviation from
    the target has the fitted σ(t).
    """
    total = sigma_at(g_target, g_max, t_seconds)
    first = programming_sigma(g_target, g_max)
    return (total * total - first * first).clamp(min=0.0).sqrt()
