"""Programming: device statistics of the programmed chip, persistence and seeds."""

from __future__ import annotations

import math

import pytest
import torch
from crossbar_weights import bounded_weights, random_weights

from ephw.crossbar import CrossbarArray, CrossbarParams, load_params
from ephw.crossbar import pcm as pcm_stats
from ephw.errors import InputError


def _active(chip: CrossbarArray) -> tuple[torch.Tensor, torch.Tensor]:
    """Programmed and target conductances of the devices above g_min (one per weight here), flat."""
    g = torch.stack(chip.conductances())
    target = torch.stack(chip.target_conductances())
    on = target > chip.params.conductance.g_min
    return g[on], target[on]


def test_gaussian_relative_programming_noise_statistics() -> None:
    W = bounded_weights(400, 300)  # 120 000 devices above g_min, targets 7.5..25 µS
    chip = CrossbarArray.program(
        W, load_params(overrides=["programming_noise.kind=gaussian", "programming_noise.rel=0.05"])
    )
    g, target = _active(chip)
    assert g.numel() >= 100_000
    rel = (g - target) / target
    assert abs(float(rel.mean())) < 4 * 0.05 / math.sqrt(g.numel())
    assert abs(float(rel.std()) / 0.05 - 1) < 0.05
    # the devices at g_min (target 0 µS, σ = 0) stay exactly there
    g_all, t_all = torch.stack(chip.conductances()), torch.stack(chip.target_conductances())
    assert torch.equal(g_all[t_all == 0], t_all[t_all == 0])


def test_gaussian_absolute_plus_relative_noise() -> None:
    W = bounded_weights(400, 300, seed=1)
    params = load_params(
        overrides=[
            "conductance.g_min=5",
            "programming_noise.kind=gaussian",
            "programming_noise.rel=0.02",
            "programming_noise.abs_uS=0.4",
        ]
    )
    chip = CrossbarArray.program(W, params)
    g = torch.stack(chip.conductances()).flatten()
    target = torch.stack(chip.target_conductances()).flatten()
    z = (g - target) / (0.02 * target + 0.4)
    assert g.numel() >= 200_000
    assert abs(float(z.std()) - 1) < 0.05
    assert abs(float(z.mean())) < 4 / math.sqrt(g.numel())


def test_pcm_programming_noise_follows_the_polynomial() -> None:
    W = bounded_weights(400, 300, lo=0.2, seed=2)
    chip = CrossbarArray.program(W, load_params(overrides=["programming_noise.kind=pcm"]))
    g, target = _active(chip)  # targets 5..25 µS: σ <= 1.06 µS, no clipping at 0
    z = (g - target) / pcm_stats.programming_sigma(target, 25.0)
    assert abs(float(z.std()) - 1) < 0.05
    # σ at g_max: c0 + c1 + c2 (aihwkit's prog_coeff at g_max = 25 µS)
    assert float(pcm_stats.programming_sigma(torch.tensor(25.0), 25.0)) == pytest.approx(0.26348 + 1.9650 - 1.1731)


def test_programming_is_persistent() -> None:
    W = random_weights(30, 40)
    params = load_params(
        overrides=["programming_noise.kind=gaussian", "programming_noise.rel=0.1", "mapping.tile_rows=16"]
    )
    chip = CrossbarArray.program(W, params)
    x = torch.rand(4, 40, dtype=torch.float64)
    assert torch.equal(chip.read(x), chip.read(x))
    assert torch.equal(chip.effective_weights(), chip.effective_weights())
    assert float((chip.effective_weights() - W).abs().max()) > 1e-3  # the noise is there


def test_stuck_fault_rates_and_values() -> None:
    W = bounded_weights(400, 300, seed=3)
    p_min, p_max = 0.01, 0.02
    params = load_params(
        overrides=["conductance.g_min=1", f"stuck_faults.p_gmin={p_min}", f"stuck_faults.p_gmax={p_max}"]
    )
    chip = CrossbarArray.program(W, params)
    stuck = torch.stack(chip.stuck_map())
    g = torch.stack(chip.conductances())
    target = torch.stack(chip.target_conductances())
    n = stuck.numel()
    assert n == chip.n_devices == 240_000
    for code, p in ((1, p_min), (2, p_max)):
        frac = float((stuck == code).double().mean())
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert bool((g[stuck == 1] == 1.0).all()) and bool((g[stuck == 2] == 25.0).all())
    assert torch.equal(g[stuck == 0], target[stuck == 0])


@pytest.mark.parametrize("bits", [1, 3, 5])
def test_levels_take_exactly_two_to_the_bits_values(bits: int) -> None:
    W = 2 * torch.rand(64, 96, generator=torch.Generator().manual_seed(bits), dtype=torch.float64) - 1
    params = load_params(
        overrides=[
            f"conductance.levels_bits={bits}",
            "conductance.g_min=2",
            "conductance.g_max=20",
            "mapping.tile_rows=32",
        ]
    )
    chip = CrossbarArray.program(W, params)
    values = torch.unique(torch.stack(chip.conductances()))
    assert values.numel() == 2**bits
    grid = 2 + 18 * torch.arange(2**bits, dtype=torch.float64) / (2**bits - 1)
    assert torch.allclose(values, grid, rtol=0, atol=1e-12)
    analog = CrossbarArray.program(W, load_params())
    assert torch.unique(torch.stack(analog.conductances())).numel() > 1000


def test_device_variability_of_g_max() -> None:
    W = torch.ones(300, 400, dtype=torch.float64)  # every G⁺ targets g_max
    chip = CrossbarArray.program(W, load_params(overrides=["variability.g_max_rel_std=0.1"]))
    g_plus, g_minus = chip.conductances()
    rel = g_plus / 25.0 - 1
    assert abs(float(rel.std()) / 0.1 - 1) < 0.05
    assert bool((g_minus == 0).all())  # devices at g_min stay there


def test_same_chip_seed_same_chip_different_seed_different_chip() -> None:
    W = random_weights(50, 70)
    base = load_params("rram", overrides=["mapping.tile_rows=32", "mapping.tile_cols=32"])
    a = CrossbarArray.program(W, base)
    b = CrossbarArray.program(W, base)
    c = CrossbarArray.program(W, base.replace(chip_seed=1))
    d = CrossbarArray.program(W, base.replace(read_seed=99))
    for x, y in zip(a.conductances(), b.conductances()):
        assert torch.equal(x, y)
    assert torch.equal(torch.stack(a.stuck_map()), torch.stack(b.stuck_map()))
    assert not torch.equal(a.conductances()[0], c.conductances()[0])
    assert torch.equal(a.conductances()[0], d.conductances()[0])  # the read seed does not touch the chip


def test_streams_are_independent_per_non_ideality() -> None:
    # Switching stuck faults on must not change the programming-noise draw of the other devices.
    W = bounded_weights(40, 60)
    noisy = load_params(overrides=["programming_noise.kind=gaussian", "programming_noise.rel=0.05"])
    a = CrossbarArray.program(W, noisy)
    b = CrossbarArray.program(W, noisy.replace(**{"stuck_faults.p_gmax": 0.1}))
    ok = torch.stack(b.stuck_map()) == 0
    assert torch.equal(torch.stack(a.conductances())[ok], torch.stack(b.conductances())[ok])


def test_reprogram_draws_afresh_and_reproducibly() -> None:
    W = random_weights(30, 40)
    params = load_params(overrides=["programming_noise.kind=gaussian", "programming_noise.rel=0.1"])
    a = CrossbarArray.program(W, params)
    first = a.conductances()[0]
    a.reprogram(W)
    second = a.conductances()[0]
    assert not torch.equal(first, second)
    b = CrossbarArray.program(W, params).reprogram(W)
    assert torch.equal(b.conductances()[0], second)
    W2 = random_weights(10, 20, seed=5)
    a.reprogram(W2)  # a new shape is a new matrix on the same chip
    assert a.shape == (10, 20)


def test_external_generator_seeds_the_programming() -> None:
    W = random_weights(20, 30)
    params = load_params(overrides=["programming_noise.kind=gaussian", "programming_noise.rel=0.1"])
    a = CrossbarArray.program(W, params, generator=torch.Generator().manual_seed(7))
    b = CrossbarArray.program(W, params, generator=torch.Generator().manual_seed(7))
    c = CrossbarArray.program(W, params)
    assert torch.equal(a.conductances()[0], b.conductances()[0])
    assert not torch.equal(a.conductances()[0], c.conductances()[0])


def test_disabled_non_idealities_are_exact_no_ops() -> None:
    W = random_weights(30, 40)
    ideal = CrossbarArray.program(W, CrossbarParams())
    off = CrossbarArray.program(
        W,
        load_params(
            overrides=[
                "programming_noise.kind=gaussian",  # rel = abs = 0
                "stuck_faults.p_gmin=0",
                "variability.g_max_rel_std=0",
                "ir_drop.enabled=false",
                "ir_drop.wire_resistance_ohm=5",
                "drift.t_seconds=86400",  # drift disabled: no effect
                "chip_seed=3",
            ]
        ),
    )
    x = torch.rand(3, 40, dtype=torch.float64)
    assert torch.equal(ideal.read(x), off.read(x))
    assert torch.equal(ideal.conductances()[0], off.conductances()[0])


def test_layers_get_independent_streams() -> None:
    W = random_weights(30, 40)
    params = load_params(
        overrides=["programming_noise.kind=gaussian", "programming_noise.rel=0.1", "read_noise.proportional=0.05"]
    )
    a0 = CrossbarArray.program(W, params, layer=0)
    a1 = CrossbarArray.program(W, params, layer=1)
    again = CrossbarArray.program(W, params, layer=1)
    assert not torch.equal(a0.conductances()[0], a1.conductances()[0])
    assert torch.equal(a1.conductances()[0], again.conductances()[0])
    assert torch.equal(CrossbarArray.program(W, params).conductances()[0], a0.conductances()[0])  # layer 0 default
    x = torch.rand(3, 40, dtype=torch.float64)
    noise0 = a0.read(x) - x @ a0.effective_weights().T
    noise1 = a1.read(x) - x @ a1.effective_weights().T
    assert not torch.allclose(noise0 / noise0.std(), noise1 / noise1.std())
    with pytest.raises(InputError, match="layer"):
        CrossbarArray.program(W, params, layer=-1)
