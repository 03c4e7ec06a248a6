"""The calibrated RRAM preset (aihwkit ReRamWan2022NoiseModel, Wan et al. 2022): statistics as fitted."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from crossbar_weights import bounded_weights

from ephw.crossbar import CrossbarArray, get_preset, load_params
from ephw.crossbar import rram as rram_stats


def _chip(t: float | None = None) -> CrossbarArray:
    W = bounded_weights(400, 300, lo=0.2, seed=5)
    over = {"read_noise.additive_uS": 0.0}  # the programmed state only
    if t is not None:
        over["drift.t_seconds"] = t
    return CrossbarArray.program(W, get_preset("rram-wan2022").replace(**over))


def _active() -> tuple[CrossbarArray, torch.Tensor]:
    chip = _chip()
    target = torch.stack(chip.target_conductances()).flatten()
    return chip, target > 0


def test_preset_holds_the_published_numbers() -> None:
    p = get_preset("rram-wan2022")
    assert p.conductance.g_max == 40.0 and p.conductance.g_min == 0.0
    assert p.programming_noise.kind == "rram_wan2022" and p.drift.model == "rram_wan2022"
    assert p.read_noise.additive_uS == pytest.approx(0.01 * 40 / math.sqrt(2), abs=1e-3)
    # aihwkit's coefficients at g_max: Σ c_i
    assert float(rram_stats.programming_sigma(torch.tensor(40.0), 40.0)) == pytest.approx(1.103, abs=1e-3)
    assert float(rram_stats.sigma_at(torch.tensor(40.0), 40.0, 86_400.0)) == pytest.approx(2.651, abs=1e-3)
    assert float(rram_stats.sigma_at(torch.tensor(20.0), 40.0, 172_800.0)) == pytest.approx(3.929, abs=1e-3)


@pytest.mark.parametrize("t", [1.0, 3600.0, 86_400.0, 172_800.0])
def test_deviation_from_target_follows_the_fitted_sigma(t: float) -> None:
    chip = _chip()
    g = torch.stack(chip.conductances(t=t)).flatten()
    target = torch.stack(chip.target_conductances()).flatten()
    on = target > 4.0  # 8..40 µS: σ <= 4 µS, clipping at 0 negligible
    z = (g[on] - target[on]) / rram_stats.sigma_at(target[on], 40.0, t)
    assert on.sum() >= 100_000
    assert float(z.std()) == pytest.approx(1.0, abs=0.02)
    assert abs(float(z.mean())) < 5 / math.sqrt(int(on.sum()))


def test_relaxation_is_persistent_and_grows_from_the_programmed_state() -> None:
    chip = _chip()
    g1 = torch.stack(chip.conductances(t=1.0)).flatten()
    assert torch.equal(g1, torch.stack(chip.conductances(t=1.0)).flatten())
    g_day = torch.stack(chip.conductances(t=86_400.0)).flatten()
    target = torch.stack(chip.target_conductances()).flatten()
    on = target > 4.0
    r = torch.corrcoef(torch.stack((g1[on] - target[on], g_day[on] - target[on])))[0, 1]
    expected = float(
        (rram_stats.programming_sigma(target[on], 40.0) / rram_stats.sigma_at(target[on], 40.0, 86_400.0)).mean()
    )
    assert float(r) == pytest.approx(expected, abs=0.03)  # the 1 s deviation stays, relaxation adds


def test_rram_alias_is_deprecated_but_works() -> None:
    with pytest.warns(DeprecationWarning, match="rram-illustrative"):
        old = get_preset("rram")
    assert old == get_preset("rram-illustrative")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert load_params("rram") == get_preset("rram-illustrative")
