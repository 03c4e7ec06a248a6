"""Fixed-point formats of lava-fixed: weight quantisation, shifts, saturation."""

from __future__ import annotations

import numpy as np
import pytest

from ephw.errors import BackendError
from ephw.lava.fixed_point import (
    FixedPointFormat,
    damping_shift,
    gain_shift,
    quantize_weights,
    saturate,
    shift,
    to_fixed,
)


def test_mixed_sign_weights_get_an_8_bit_mantissa_and_half_lsb_error():
    w = np.random.default_rng(0).normal(0, 0.1, size=(16, 9))
    q = quantize_weights(w)
    mant = q.w_int // 2
    assert np.all(q.w_int % 2 == 0) and mant.min() >= -128 and mant.max() <= 127
    assert np.abs(mant).max() >= 64  # the exponent uses the range
    lsb = 2.0 ** (q.weight_exp + 1)
    assert np.abs(q.dequantize() - w).max() <= lsb / 2 + 1e-15


def test_single_sign_weights_use_lavas_unsigned_8_bit_range():
    w = np.linspace(0.0, 3.0, 50)
    q = quantize_weights(w)
    assert q.w_int.min() >= 0 and q.w_int.max() <= 255 and q.w_int.max() >= 128
    assert np.abs(q.dequantize() - w).max() <= 2.0**q.weight_exp / 2 + 1e-15


def test_shift_floors_like_lavas_dense_and_saturation_clips():
    a = np.array([-5, -1, 0, 1, 5])
    assert shift(a, -1).tolist() == [-3, -1, 0, 0, 2]
    assert shift(a, 2).tolist() == [-20, -4, 0, 4, 20]
    assert saturate(np.array([2**30, -(2**30), 7]), 24).tolist() == [2**23 - 1, -(2**23), 7]


def test_formats_and_power_of_two_checks():
    fmt = FixedPointFormat(frac_bits=8)
    assert to_fixed(np.array([0.5, 1.0, -2.0]), fmt).tolist() == [128, 256, -512]
    assert gain_shift(0.5) == -1 and damping_shift(0.25) == 2
    with pytest.raises(BackendError):
        gain_shift(0.3)
    with pytest.raises(BackendError):
        damping_shift(0.3)
    with pytest.raises(BackendError):
        FixedPointFormat(frac_bits=30)


def test_biases_take_loihis_13_bit_mantissa_and_3_bit_exponent():
    from ephw.lava.fixed_point import FixedPointFormat, loihi_bias

    fmt = FixedPointFormat(frac_bits=10)
    b = np.array([0.1, -3.9, 5.0, 100.0, -1e6])
    q = loihi_bias(b, fmt)
    assert q.mant.min() >= -4096 and q.mant.max() <= 4095
    assert q.exp.min() >= 0 and q.exp.max() <= 7
    assert list(q.exp) == [0, 0, 1, 5, 7]  # the smallest exponent whose mantissa fits
    assert np.array_equal(q.value[:2], np.round(b[:2] * 1024))  # small biases: exact to one LSB of the scale
    assert q.value[2] == 5 * 1024 and q.value[3] == 100 * 1024
    assert q.value[4] == -4096 * 2**7  # saturated
