"""Statistics of phase-change memory (PCM) devices, as fitted on measured PCM arrays.

The numbers are those of IBM aihwkit's ``PCMLikeNoiseModel``
(``aihwkit/inference/noise/pcm.py``), which implements the model of
S. R. Nandakumar et al., "Phase-change memory models for deep learning training and
inference", ICECS 2019 (https://ieeexplore.ieee.org/document/8964852), fitted on
about one million PCM devices with ``g_max = 25 µS``. Only the numbers are taken
over; the functions here are written for ephw (torch, vectorised, explicit generators).

All conductances are in µS, times in seconds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Programming-noise polynomial ``σ_prog = c0 + c1·(G/g_max) + c2·(G/g_max)²`` in µS,
#: fitted for ``g_max = 25 µS`` (aihwkit ``prog_coeff``).
PROG_COEFF_uS: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
#: ``g_max`` the programming polynomial was fitted for, µS; σ scales with ``g_max/25``.
PROG_G_MAX_REF_uS: float = 25.0

#: Drift exponent mean ``μ_ν = a·ln(G/g_max) + b``, clipped to ``[lo, hi]``.
NU_MEAN: tuple[float, float] = (-0.0155, 0.0244)
NU_MEAN_CLIP: tuple[float, float] = (0.049, 0.1)
#: Drift exponent spread ``σ_ν = a·ln(G/g_max) + b``, clipped to ``[lo, hi]``.
NU_STD: tuple[float, float] = (-0.0125, -0.0059)
NU_STD_CLIP: tuple[float, float] = (0.008, 0.045)
#: Lower clip of ``G/g_max`` before taking its log (aihwkit ``_ZERO_CLIP``).
G_REL_FLOOR: float = 1e-7

#: 1/f read noise ``Q_s = min(c / max((G/g_max)^p, floor), cap)``.
Q_S_COEFF: float = 0.0088
Q_S_POWER: float = 0.65
Q_S_FLOOR: float = 1e-3
Q_S_CAP: float = 0.2


def programming_sigma(g_target: Tensor, g_max: float) -> Tensor:
    """Standard deviation (µS) of the programmed conductance for targets ``g_target`` (µS, any shape).

    ``σ = (c0 + c1·g + c2·g²)·g_max/25`` with ``g = G_target/g_max`` (aihwkit ``prog_coeff``);
    clipped at 0 for targets far above ``g_max`` where the fitted parabola turns negative.
    """
    g = g_target / g_max
    c0, c1, c2 = PROG_COEFF_uS
    sigma = (c0 + g * (c1 + g * c2)) * (g_max / PROG_G_MAX_REF_uS)
    return sigma.clamp(min=0.0)


def drift_nu_mean_std(g_target: Tensor, g_max: float) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the drift exponent ν for targets ``g_target`` (µS).

    ``μ_ν = clip(−0.0155·ln(G/g_max) + 0.0244, 0.049, 0.1)``,
    ``σ_ν = clip(−0.0125·ln(G/g_max) − 0.0059, 0.008, 0.045)``.
    """
    log_g = torch.log((g_target.abs() / g_max).clamp(min=G_REL_FLOOR))
    mean = (NU_MEAN[0] * log_g + NU_MEAN[1]).clamp(*NU_MEAN_CLIP)
    std = (NU_STD[0] * log_g + NU_STD[1]).clamp(*NU_STD_CLIP)
    return mean, std


def draw_drift_nu(g_target: Tensor, g_max: float, generator: torch.Generator) -> Tensor:
    """Per-device drift exponents ``ν = |μ_ν + σ_ν·N(0,1)|`` (dimensionless, shape of ``g_target``)."""
    mean, std = drift_nu_mean_std(g_target, g_max)
    noise = torch.randn(g_target.shape, generator=generator, device=g_target.device, dtype=g_target.dtype)
    return (mean + std * noise).abs()


def one_over_f_sigma(g_prog: Tensor, g_max: float, t_seconds: float, t_read_s: float) -> Tensor:
    """Relative σ of the PCM 1/f read noise at time ``t_seconds`` after programming (dimensionless).

    ``σ/G = Q_s·sqrt(ln((t + t_read)/(2·t_read)))`` with
    ``Q_s = min(0.0088/max((G_prog/g_max)^0.65, 1e-3), 0.2)``; the log is floored at 0
    (for ``t < t_read`` there is no accumulated noise).
    """
    q_s = (Q_S_COEFF / ((g_prog.abs() / g_max) ** Q_S_POWER).clamp(min=Q_S_FLOOR)).clamp(max=Q_S_CAP)
    return q_s * math.sqrt(max(math.log((t_seconds + t_read_s) / (2.0 * t_read_s)), 0.0))
