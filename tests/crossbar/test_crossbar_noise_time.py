"""Read-noise time structure: frozen per inference time, correlated AR(1) across reads, per_read white."""

from __future__ import annotations

import math

import pytest
import torch
from crossbar_weights import bounded_weights

from ephw.crossbar import CrossbarArray, get_preset, load_params
from ephw.errors import ConfigError

NOISY = ["read_noise.proportional=0.05", "mapping.tile_rows=64"]


def _chip(structure: str, *extra: str, shape: tuple[int, int] = (40, 90)) -> CrossbarArray:
    W = bounded_weights(*shape)
    return CrossbarArray.program(W, load_params(overrides=[*NOISY, f"read_noise.time_structure={structure}", *extra]))


def test_frozen_noise_is_one_draw_per_inference_time() -> None:
    chip = _chip("frozen", "drift.enabled=true")
    x = torch.rand(3, 90, dtype=torch.float64)
    v = torch.rand(3, 40, dtype=torch.float64)
    a, b = chip.read(x, t=3600.0), chip.read(x, t=3600.0)
    assert torch.equal(a, b)  # identical reads at one t
    assert torch.equal(chip.read_transposed(v, t=3600.0), chip.read_transposed(v, t=3600.0))
    c = chip.read(x, t=86_400.0)
    assert not torch.equal(a, c)  # another t: another draw ...
    # ... not only drift: the noise draw itself changes (compare against the noise-free reads)
    noise_a = a - x @ chip.effective_weights(3600.0).T
    noise_c = c - x @ chip.effective_weights(86_400.0).T
    assert float(noise_a.abs().max()) > 1e-3 and not torch.allclose(noise_a, noise_c)
    assert torch.equal(chip.read(x, t=3600.0), a)  # back at t: the same draw (seeded by t)
    # forward and transposed reads see the same frozen conductances (one noisy chip)
    w_read = chip.read(torch.eye(90, dtype=torch.float64), t=3600.0).T
    w_tread = chip.read_transposed(torch.eye(40, dtype=torch.float64), t=3600.0)
    assert torch.allclose(w_read, w_tread, atol=1e-12)


def test_frozen_noise_has_the_per_read_variance() -> None:
    """One frozen draw per device has the variance a per-read draw has (only its time structure differs)."""
    W = bounded_weights(200, 300)
    base = load_params(overrides=NOISY)
    frozen = CrossbarArray.program(W, base.replace(**{"read_noise.time_structure": "frozen"}))
    white = CrossbarArray.program(W, base)
    eye = torch.eye(300, dtype=torch.float64)
    e_frozen = frozen.read(eye).T - frozen.effective_weights()
    e_white = white.read(eye).T - white.effective_weights()
    ratio = float(e_frozen.std() / e_white.std())
    assert ratio == pytest.approx(1.0, abs=0.02)  # 60k weights: sampling error ~0.4 %


def test_correlated_noise_has_the_configured_lag1_correlation() -> None:
    tau = 4.0
    rho = math.exp(-1 / tau)
    chip = _chip("correlated", f"read_noise.tau_reads={tau}", shape=(400, 300))  # 120k weights
    eye = torch.eye(300, dtype=torch.float64)
    w = chip.effective_weights()
    reads = [(chip.read(eye).T - w).flatten() for _ in range(4)]
    n = reads[0].numel()
    assert n >= 100_000
    for lag, expected in ((1, rho), (2, rho * rho)):
        r = torch.corrcoef(torch.stack((reads[0], reads[lag])))[0, 1]
        assert float(r) == pytest.approx(expected, abs=4 * (1 - expected**2) / math.sqrt(n))
    # stationary: the variance does not change from read to read
    assert float(reads[3].std() / reads[0].std()) == pytest.approx(1.0, abs=0.02)
    # the correlation time is in reads of either direction: a transposed read advances the process
    before = (chip.read(eye).T - w).flatten()
    chip.read_transposed(torch.rand(2, 400, dtype=torch.float64))
    after = (chip.read(eye).T - w).flatten()
    r = torch.corrcoef(torch.stack((before, after)))[0, 1]
    assert float(r) == pytest.approx(rho * rho, abs=4 * (1 - rho**4) / math.sqrt(n))


def test_per_read_noise_is_uncorrelated_between_reads() -> None:
    chip = _chip("per_read", shape=(400, 300))
    eye = torch.eye(300, dtype=torch.float64)
    w = chip.effective_weights()
    a, b = ((chip.read(eye).T - w).flatten() for _ in range(2))
    r = torch.corrcoef(torch.stack((a, b)))[0, 1]
    assert abs(float(r)) < 4 / math.sqrt(a.numel())


def test_correlated_noise_is_reproducible_and_restarts_on_reprogram() -> None:
    x = torch.rand(2, 90, dtype=torch.float64)
    one, two = _chip("correlated"), _chip("correlated")
    assert torch.equal(torch.stack([one.read(x) for _ in range(3)]), torch.stack([two.read(x) for _ in range(3)]))


def test_pcm_preset_reads_frozen_noise() -> None:
    params = get_preset("pcm").replace(**{"mapping.tile_rows": 64})
    chip = CrossbarArray.program(bounded_weights(30, 100), params)
    x = torch.rand(4, 100, dtype=torch.float64)
    assert params.read_noise.time_structure == "frozen"
    assert torch.equal(chip.read(x), chip.read(x))
    assert not torch.equal(chip.read(x), chip.read(x, t=86_400.0))
    assert chip.linear_read()[1] is None  # the draw is in the weights: no per-read variance


def test_bad_time_structure_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="time_structure must be one of per_read, frozen, correlated"):
        load_params(overrides=["read_noise.time_structure=pink"])
    with pytest.raises(ConfigError, match="tau_reads must be > 0"):
        load_params(overrides=["read_noise.tau_reads=0"])
