"""DAC / ADC: resolution, saturation, dynamic range; through the array."""

from __future__ import annotations

import pytest
import torch
from crossbar_weights import random_weights

from ephw.crossbar import Converter, CrossbarArray, convert, load_params, quantize

X = torch.linspace(-3, 3, 10001, dtype=torch.float64)


@pytest.mark.parametrize("bits", [2, 3, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_fixed_range_resolution_and_saturation(bits: int, signed: bool) -> None:
    q = quantize(X, Converter(bits=bits, bound=1.5, signed=signed))
    values = torch.unique(q)
    assert values.numel() <= 2**bits
    assert values.numel() == (2**bits - 1 if signed else 2**bits)
    assert float(q.max()) == 1.5 and float(q.min()) == (-1.5 if signed else 0.0)
    inside = X.abs() <= 1.5 if signed else (X >= 0) & (X <= 1.5)
    step = 1.5 / Converter(bits=bits, bound=1.5, signed=signed).n_steps
    assert float((q - X)[inside].abs().max()) <= step / 2 + 1e-12
    assert bool((q[X > 1.5] == 1.5).all())


def test_dynamic_range_is_set_per_vector() -> None:
    x = torch.tensor([[0.1, -0.5, 0.2], [4.0, 1.0, -2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    code, full_scale = convert(x, Converter(bits=4))
    assert full_scale.squeeze(-1).tolist() == [0.5, 4.0, 1.0]
    q = code * full_scale
    assert q.abs().amax(-1).tolist() == [0.5, 4.0, 0.0]  # never saturates
    assert torch.unique(q[1]).numel() <= 16


def test_ideal_and_clip_only() -> None:
    assert quantize(X, Converter()) is X
    clipped = quantize(X, Converter(bound=2.0))
    assert torch.equal(clipped, X.clamp(-2, 2))


def test_converter_validation() -> None:
    from ephw.errors import ConfigError

    with pytest.raises(ConfigError):
        Converter(bits=1)  # signed needs a sign bit and a magnitude bit
    Converter(bits=1, signed=False)
    with pytest.raises(ConfigError):
        Converter(bound=0.0)


def test_array_dac_quantises_the_inputs() -> None:
    W = random_weights(5, 10)
    chip = CrossbarArray.program(
        W, load_params(overrides=["dac_forward.bits=3", "dac_forward.bound=1", "dac_forward.signed=false"])
    )
    x = torch.rand(7, 10, dtype=torch.float64) * 1.4
    expected = quantize(x, Converter(bits=3, bound=1.0, signed=False)) @ W.T
    assert torch.allclose(chip.read(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
def test_array_adc_levels_and_saturation(transposed: bool) -> None:
    W = random_weights(6, 10)
    m = float(W.abs().max())  # one tile: outputs are in units of max|w|·(full-scale input)
    side = "transposed" if transposed else "forward"
    chip = CrossbarArray.program(W, load_params(overrides=[f"adc_{side}.bits=4", f"adc_{side}.bound=2"]))
    g = torch.Generator().manual_seed(0)
    if transposed:
        y = chip.read_transposed(3 * torch.randn(500, 6, generator=g, dtype=torch.float64))
    else:
        y = chip.read(3 * torch.randn(500, 10, generator=g, dtype=torch.float64))
    assert torch.unique(y).numel() <= 2**4
    assert float(y.max()) == pytest.approx(2 * m, rel=1e-12) and float(y.min()) == pytest.approx(-2 * m, rel=1e-12)


def test_adc_input_noise_has_the_configured_std() -> None:
    from crossbar_weights import bounded_weights

    from ephw.crossbar import CrossbarArray

    W = bounded_weights(30, 64)
    chip = CrossbarArray.program(W, load_params(overrides=["adc_forward.noise=0.02", "mapping.tile_rows=64"]))
    x = torch.rand(1, 64, dtype=torch.float64).expand(20_000, -1)
    y = chip.read(x)
    # one tile: the ADC noise in weight units is σ·max|w| = 0.02·1
    assert float(y.std(0).mean()) == pytest.approx(0.02, rel=0.03)
    assert torch.allclose(y.mean(0), (x @ W.T)[0], atol=5 * 0.02 / 20_000**0.5)


@pytest.mark.parametrize("mode", ["tile", "column"])
def test_adc_range_calibration_from_inputs(mode: str) -> None:
    from crossbar_weights import bounded_weights

    from ephw.crossbar import CrossbarArray
    from ephw.errors import InputError

    W = bounded_weights(40, 96)
    over = [f"adc_forward.calibration={mode}", "adc_forward.bits=8", "mapping.tile_rows=32", "mapping.tile_cols=16"]
    chip = CrossbarArray.program(W, load_params(overrides=over))
    x = torch.rand(64, 96, dtype=torch.float64)
    with pytest.raises(InputError, match="calibrate"):
        chip.read(x)
    scale = chip.calibrate(x)
    assert scale.shape == (3, 3, 1 if mode == "tile" else 16)
    y = chip.read(x)
    # calibrated on these inputs: nothing saturates, the error is the 8-bit rounding only
    step = float(scale.max()) / 127
    assert float((y - x @ W.T).abs().max()) <= 3 * step * 1.0 + 1e-12
    # a dynamic 8-bit ADC without calibration is no better on this batch than the calibrated one
    assert float((y - x @ W.T).abs().mean()) < 0.05
