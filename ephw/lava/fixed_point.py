"""Loihi-2-style fixed-point formats of the ``lava-fixed`` backend.

Conventions (as lava-nc 0.10's bit-accurate ``Dense`` model implements them):

* **weights**: per projection, integers ``w_int`` in lava's 8-bit weight format plus one
  shared exponent ``weight_exp``, ``w ~= w_int * 2**weight_exp``. Mixed-sign weights keep
  an 8-bit signed mantissa ``m`` (``w_int = 2 m``, ``m in [-128, 127]``): lava's
  ``clip_weights``/``truncate_weights`` (``lava.utils.weightutils``) are applied exactly as
  the bit-accurate ``Dense`` model does. A synaptic sum is ``shift(sum w_int s, weight_exp)``
  (left shift for a positive exponent, arithmetic right shift -- floor -- otherwise).
* **states and drives**: integers at the scale ``S = 2**frac_bits`` (``s = s_int / S``,
  ``s_int in [0, S]``; ``u = u_int / S``), carried as graded-spike payloads saturated to
  ``payload_bits = 24`` signed bits.
* **biases**: ``round(b * S)`` at the drive scale, added before pooling.
* **activation**: ``clamp(g u, 0, 1)`` with ``g`` a power of two becomes a shift and a
  clamp to ``[0, S]``; damping ``dt = 2**-d`` is a shift of the update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ephw.errors import BackendError


@dataclass(frozen=True)
class FixedPointFormat:
    """Integer formats of the fixed-point lava models.

    Attributes:
        frac_bits: fractional bits of states and drives (scale ``S = 2**frac_bits``).
        payload_bits: signed width of graded-spike payloads (drives, states); Loihi 2's
            graded spikes carry up to 24 bits in lava.
        weight_bits: weight mantissa width including the sign (Loihi: 8).
    """

    frac_bits: int = 10
    payload_bits: int = 24
    weight_bits: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.frac_bits <= self.payload_bits - 3:
            raise BackendError(f"lava-fixed: frac_bits must be in [1, {self.payload_bits - 3}], got {self.frac_bits}")
        if self.weight_bits != 8:
            raise BackendError("lava-fixed: Loihi 2 weights have an 8-bit mantissa (weight_bits=8)")

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits


@dataclass(frozen=True)
class QuantizedWeights:
    """``w ~= w_int * 2**weight_exp`` (``w_int`` int64, in lava's weight format)."""

    w_int: np.ndarray
    weight_exp: int

    def dequantize(self) -> np.ndarray:
        return self.w_int.astype(np.float64) * 2.0**self.weight_exp


def quantize_weights(w: np.ndarray) -> QuantizedWeights:
    """Round float weights to lava's 8-bit weight format with one shared exponent.

    The exponent is the smallest that fits ``max |w|`` into the 8-bit range; values are
    rounded to the nearest representable weight, then passed through lava's own
    ``clip_weights`` and ``truncate_weights`` (what Loihi stores).
    """
    from ephw.lava import compat

    compat.install()
    from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

    w = np.asarray(w, dtype=np.float64)
    peak = float(np.abs(w).max()) if w.size else 0.0
    if peak == 0.0:
        return QuantizedWeights(np.zeros(w.shape, dtype=np.int64), 0)
    mode = determine_sign_mode(w)
    exp = math.ceil(math.log2(peak / 255.0))
    if mode == SignMode.MIXED:  # 8-bit signed mantissa: the lowest of lava's 9 bits is dropped
        w_int = 2 * np.round(w / 2.0 ** (exp + 1))
    else:
        w_int = np.round(w / 2.0**exp)
    w_int = clip_weights(w_int.astype(np.int32), mode, num_bits=8)
    w_int = truncate_weights(w_int, mode, num_weight_bits=8)
    return QuantizedWeights(np.asarray(w_int, dtype=np.int64), exp)


def shift(a: np.ndarray, exp: int) -> np.ndarray:
    """``a * 2**exp`` for integer ``a`` as lava's bit-accurate Dense: left shift, or arithmetic right shift (floor)."""
    return np.left_shift(a, exp) if exp > 0 else np.right_shift(a, -exp)


def saturate(a: np.ndarray, bits: int) -> np.ndarray:
    """Clip integers to the signed ``bits``-bit range."""
    hi = (1 << (bits - 1)) - 1
    return np.clip(a, -hi - 1, hi)


def to_fixed(x: np.ndarray, fmt: FixedPointFormat) -> np.ndarray:
    """``round(x * S)`` as int64, saturated to the payload width."""
    return saturate(np.round(np.asarray(x, dtype=np.float64) * fmt.scale).astype(np.int64), fmt.payload_bits)


def gain_shift(gain: float) -> int:
    """``log2(gain)`` for a power-of-two activation gain (raises otherwise)."""
    k = math.log2(gain) if gain > 0 else float("nan")
    if not k == round(k):
        raise BackendError(f"lava-fixed: the activation gain must be a power of two, got {gain}")
    return int(round(k))


def damping_shift(dt: float) -> int:
    """``d`` with ``dt = 2**-d`` (raises unless ``dt`` is ``1, 1/2, 1/4, ...``)."""
    d = -math.log2(dt) if dt > 0 else float("nan")
    if not (d >= 0 and d == round(d)):
        raise BackendError(f"lava-fixed: dt must be 1, 1/2, 1/4, ... (a shift), got {dt}")
    return int(round(d))


#: Loihi's neuron bias: a signed 13-bit mantissa (-4096..4095) and an unsigned 3-bit exponent
#: (0..7), ``bias = bias_mant << bias_exp`` (lava-nc 0.10, ``lava.proc.lif.models``, fixed-point
#: LIF: "bias_mant: signed 13-bit integer", "bias_exp: unsigned 3-bit integer").
BIAS_MANT_BITS = 13
BIAS_EXP_MAX = 7


@dataclass(frozen=True)
class LoihiBias:
    """Biases in Loihi's format: ``bias_int = mant << exp`` per entry, at the drive scale ``S``.

    ``mant`` int64 in ``[-4096, 4095]``, ``exp`` int64 in ``[0, 7]``; :attr:`value` is the
    integer bias the fixed-point models add (``value / S`` is the represented bias).
    """

    mant: np.ndarray
    exp: np.ndarray

    @property
    def value(self) -> np.ndarray:
        return np.left_shift(self.mant, self.exp)


def loihi_bias(b: np.ndarray, fmt: FixedPointFormat) -> LoihiBias:
    """Round biases ``b`` (floats, drive units) to Loihi's 13-bit mantissa + 3-bit exponent.

    Each entry takes the smallest exponent whose mantissa ``round(b * S / 2**exp)`` fits 13
    signed bits (so biases up to ``4095 / S`` are exact to one LSB of ``S``; larger ones lose
    ``exp`` low bits); beyond ``4095 * 2**7 / S`` the mantissa saturates.
    """
    hi = (1 << (BIAS_MANT_BITS - 1)) - 1
    scaled = np.asarray(b, dtype=np.float64) * fmt.scale
    exp = np.zeros(scaled.shape, dtype=np.int64)
    for _ in range(BIAS_EXP_MAX):  # raise the exponent where the mantissa does not fit yet
        exp += (np.abs(np.round(scaled / 2.0**exp)) > hi) & (exp < BIAS_EXP_MAX)
    mant = np.clip(np.round(scaled / 2.0**exp), -hi - 1, hi).astype(np.int64)
    return LoihiBias(mant, exp)
