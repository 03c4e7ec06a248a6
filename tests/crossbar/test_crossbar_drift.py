"""PCM drift: power law with stored per-device exponents; global drift compensation."""

from __future__ import annotations

import math

import pytest
import torch
from crossbar_weights import bounded_weights

from ephw.crossbar import CrossbarArray, load_params
from ephw.crossbar import pcm as pcm_stats

TIMES = (20.0, 3600.0, 86400.0)


def _expected_abs_normal_mean(mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """E|N(μ, σ²)|."""
    normal = torch.distributions.Normal(0.0, 1.0)
    return sd * math.sqrt(2 / math.pi) * torch.exp(-0.5 * (mu / sd) ** 2) + mu * (1 - 2 * normal.cdf(-mu / sd))


def test_mean_log_ratio_slope_is_minus_mean_nu() -> None:
    W = bounded_weights(200, 300, lo=0.05)
    chip = CrossbarArray.program(W, load_params(overrides=["drift.enabled=true"]))
    g0 = torch.stack(chip.conductances(t=20.0))
    on = g0 > 0
    nu = torch.stack(chip.drift_exponents())[on]
    xs = torch.tensor([math.log(t / 20.0) for t in TIMES], dtype=torch.float64)
    ys = torch.stack([torch.log(torch.stack(chip.conductances(t=t))[on] / g0[on]).mean() for t in TIMES])
    slope = float(((xs - xs.mean()) * (ys - ys.mean())).sum() / ((xs - xs.mean()) ** 2).sum())
    assert slope == pytest.approx(-float(nu.mean()), rel=1e-9)

    # ν follows the aihwkit statistics: mean |N(μ_ν(G), σ_ν(G))|
    target = torch.stack(chip.target_conductances())[on]
    mu, sd = pcm_stats.drift_nu_mean_std(target, 25.0)
    expected = float(_expected_abs_normal_mean(mu, sd).mean())
    assert float(nu.mean()) == pytest.approx(expected, rel=0.01)
    assert float(nu.std()) > 0.005


def test_drift_exponent_statistics_at_the_clip_bounds() -> None:
    mu, sd = pcm_stats.drift_nu_mean_std(torch.tensor([25.0, 0.25, 0.0]), 25.0)
    assert mu.tolist() == pytest.approx([0.049, -0.0155 * math.log(0.01) + 0.0244, 0.1])
    assert sd.tolist() == pytest.approx([0.008, 0.045, 0.045])


def test_no_drift_before_t0_and_without_drift() -> None:
    W = bounded_weights(20, 30)
    chip = CrossbarArray.program(W, load_params(overrides=["drift.enabled=true"]))
    assert torch.equal(chip.conductances(t=1.0)[0], chip.conductances(t=20.0)[0])
    assert not torch.equal(chip.conductances(t=3600.0)[0], chip.conductances(t=20.0)[0])
    off = CrossbarArray.program(W, load_params())
    assert off.drift_exponents() is None
    assert torch.equal(off.effective_weights(t=86400.0), off.effective_weights(t=20.0))


def test_same_chip_read_at_several_times() -> None:
    W = bounded_weights(20, 30)
    chip = CrossbarArray.program(W, load_params(overrides=["drift.enabled=true", "drift.t_seconds=3600"]))
    x = torch.rand(4, 30, dtype=torch.float64)
    hour = chip.read(x)
    day = chip.read(x, t=86400.0)
    assert torch.allclose(hour, x @ chip.effective_weights().T, rtol=1e-12, atol=1e-12)
    assert torch.allclose(day, x @ chip.effective_weights(t=86400.0).T, rtol=1e-12, atol=1e-12)
    assert float(day.abs().sum()) < float(hour.abs().sum())  # conductances decay
    assert torch.equal(chip.read(x), hour)  # back to the default time


def test_global_drift_compensation_restores_the_tile_scale() -> None:
    W = bounded_weights(40, 60)
    params = load_params(overrides=["drift.enabled=true", "drift.compensation=true", "mapping.tile_rows=16"])
    chip = CrossbarArray.program(W, params)
    fresh, day = chip.effective_weights(t=20.0), chip.effective_weights(t=86400.0)
    assert float(day.abs().sum()) == pytest.approx(float(fresh.abs().sum()), rel=1e-9)
    uncompensated = CrossbarArray.program(W, params.replace(**{"drift.compensation": False}))
    assert float(uncompensated.effective_weights(t=86400.0).abs().sum()) < 0.9 * float(fresh.abs().sum())
    assert float((day - W).norm()) < float((uncompensated.effective_weights(t=86400.0) - W).norm())
