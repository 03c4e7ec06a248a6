"""Read noise: redrawn per read, output-referred std as documented, independent of the chip."""

from __future__ import annotations

import math

import pytest
import torch
from crossbar_weights import bounded_weights

from ephw.crossbar import CrossbarArray, load_params
from ephw.crossbar import pcm as pcm_stats

NOISY_CHIP = ["programming_noise.kind=gaussian", "programming_noise.rel=0.05", "mapping.tile_rows=64"]


def _expected_std(chip: CrossbarArray, x: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``sqrt(x² @ ((σ⁺² + σ⁻²)/s²)ᵀ)`` from the documented per-device read-noise σ."""
    rn, p = chip.params.read_noise, chip.params
    t = p.drift.t_seconds
    var = 0.0
    for g in chip.conductances():
        v = rn.additive_uS**2 + (rn.proportional * g) ** 2
        if rn.pcm_1f:
            v = v + (pcm_stats.one_over_f_sigma(g, p.conductance.g_max, t, rn.t_read_s) * g) ** 2
        var = var + v
    var_w = var / chip.mapping_scale() ** 2
    return torch.sqrt((x * x) @ (var_w if transposed else var_w.T))


CASES = {
    "additive+proportional": ["read_noise.additive_uS=0.3", "read_noise.proportional=0.03"],
    "pcm_1f": ["read_noise.pcm_1f=true", "drift.t_seconds=3600"],
    "per-tile-adc-path": ["read_noise.proportional=0.05", "adc_forward.bound=1e9", "adc_transposed.bound=1e9"],
}


@pytest.mark.parametrize("case", CASES)
def test_read_noise_std_matches_formula(case: str) -> None:
    W = bounded_weights(48, 150)
    chip = CrossbarArray.program(W, load_params(overrides=NOISY_CHIP + CASES[case]))
    n = 4000
    x = torch.rand(1, 150, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = chip.read(x.expand(n, -1))
    ratio = y.std(dim=0) / _expected_std(chip, x)[0]
    assert float((ratio - 1).abs().max()) < 0.05
    mean_err = (y.mean(0) - x @ chip.effective_weights().T)[0] / (y.std(0) / math.sqrt(n))
    assert float(mean_err.abs().max()) < 5  # zero-mean noise around the programmed weights

    v = torch.rand(1, 48, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z = chip.read_transposed(v.expand(n, -1))
    ratio = z.std(dim=0) / _expected_std(chip, v, transposed=True)[0]
    assert float((ratio - 1).abs().max()) < 0.05


def test_read_noise_is_redrawn_every_read() -> None:
    chip = CrossbarArray.program(bounded_weights(20, 30), load_params(overrides=["read_noise.proportional=0.02"]))
    x = torch.rand(2, 30, dtype=torch.float64)
    a, b = chip.read(x), chip.read(x)
    assert not torch.equal(a, b)
    assert not torch.equal(chip.read_transposed(x[:, :20]), chip.read_transposed(x[:, :20]))
    assert float((a - b).abs().max()) < 0.5  # noise, not garbage


def test_read_noise_is_independent_of_the_programming_draw() -> None:
    W = bounded_weights(64, 200)
    params = load_params(overrides=NOISY_CHIP + ["read_noise.additive_uS=0.5"])
    chip = CrossbarArray.program(W, params)
    w_eff = chip.effective_weights()
    read = chip.read(torch.eye(200, dtype=torch.float64)).T  # (out, in): one device pair per entry
    read_err = (read - w_eff).flatten()
    prog_err = (w_eff - W).flatten()
    r = torch.corrcoef(torch.stack((read_err, prog_err)))[0, 1]
    assert abs(float(r)) < 4 / math.sqrt(read_err.numel())

    other = CrossbarArray.program(W, params.replace(read_seed=7))
    assert torch.equal(other.effective_weights(), w_eff)  # same chip
    x = torch.rand(3, 200, dtype=torch.float64)
    assert not torch.equal(other.read(x), CrossbarArray.program(W, params).read(x))  # other noise
    same = CrossbarArray.program(W, params)
    assert torch.equal(same.read(x), CrossbarArray.program(W, params).read(x))  # reproducible stream


def test_pcm_1f_noise_grows_with_time() -> None:
    g = torch.tensor([5.0, 25.0])
    early = pcm_stats.one_over_f_sigma(g, 25.0, 20.0, 250e-9)
    late = pcm_stats.one_over_f_sigma(g, 25.0, 86400.0, 250e-9)
    assert bool((late > early).all())
    # Q_s = 0.0088 at g_max, times sqrt(ln((t + t_read)/(2 t_read)))
    assert float(early[1]) == pytest.approx(0.0088 * math.sqrt(math.log((20 + 250e-9) / 500e-9)))
