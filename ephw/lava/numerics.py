"""How the lava process models represent numbers: one :class:`Numerics` per network.

Every process model has a single implementation; this object is its precision
parameter. ``floating_pt`` models compute in the payload dtype (float64 or float32);
``fixed_pt`` models follow :mod:`ephw.lava.fixed_point` (integer states and drives at the
scale ``S = 2**frac_bits``, payloads saturated to ``payload_bits`` signed bits, integer
synaptic sums evaluated exactly in float64 BLAS). Pure numpy: lava's forked children must
not call torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ephw.errors import BackendError
from ephw.lava.fixed_point import saturate, shift

PRECISIONS = ("floating_pt", "fixed_pt")
#: integers of magnitude below this are exact in float32 (24-bit significand)
FLOAT32_EXACT = 2**24
FLOAT_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Numerics:
    """Number formats of one lava network.

    Attributes:
        precision: ``"floating_pt"`` or ``"fixed_pt"`` (the ``select_tag`` of ``Loihi2SimCfg``).
        dtype: payload dtype between processes: ``"float64"``/``"float32"`` (floating
            point) or ``"int32"`` (fixed point, values within ``payload_bits``).
        frac_bits: fixed point: fractional bits of states and drives.
        payload_bits: fixed point: signed width of graded payloads.
        gain_shift: fixed point: ``log2`` of the activation gain.
        dt_shift: fixed point: ``d`` of the damping ``dt = 2**-d``.
    """

    precision: str = "floating_pt"
    dtype: str = "float64"
    frac_bits: int = 0
    payload_bits: int = 24
    gain_shift: int = 0
    dt_shift: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BackendError(f"lava: precision must be one of {PRECISIONS}, got {self.precision!r}")
        allowed = FLOAT_DTYPES if self.precision == "floating_pt" else ("int32",)
        if self.dtype not in allowed:
            raise BackendError(f"lava: {self.precision} payloads are {' or '.join(allowed)}, got {self.dtype!r}")

    @property
    def fixed(self) -> bool:
        return self.precision == "fixed_pt"

    @property
    def scale(self) -> int:
        """Integer units per state unit (1 for floating point)."""
        return 1 << self.frac_bits if self.fixed else 1

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def sum_dtype(self, l1: float, max_input: float) -> np.dtype:
        """dtype of a synaptic sum: the payload dtype (floating point), or for fixed point the
        narrowest float in which the integer sum is exact.

        Every partial sum of ``w . x`` is an integer of magnitude at most ``l1 * max_input``
        (``l1``: the largest sum of ``|w|`` over one output's inputs). Below ``2**24`` float32
        holds each exactly, so any summation order gives the exact sum (about 2x faster than
        float64 here); otherwise float64, exact below ``2**53`` (:mod:`ephw.lava.conv`).
        """
        if not self.fixed:
            return self.np_dtype
        return np.dtype(np.float32) if l1 * max_input < FLOAT32_EXACT else np.dtype(np.float64)

    @property
    def sum_dtypes(self) -> tuple[np.dtype, ...]:
        """Every dtype :meth:`sum_dtype` can return."""
        return (np.dtype(np.float32), np.dtype(np.float64)) if self.fixed else (self.np_dtype,)

    def params(self) -> dict:
        """As a plain dict (a lava process parameter)."""
        return asdict(self)

    # ------------------------------------------------------------------ conversions
    def encode(self, a: np.ndarray, *, nonnegative: bool = False) -> np.ndarray:
        """State units (float) -> payloads: ``round(a * S)`` saturated (fixed), else a cast."""
        if not self.fixed:
            return np.asarray(a, dtype=self.np_dtype)
        q = saturate(np.round(np.asarray(a, dtype=np.float64) * self.scale).astype(np.int64), self.payload_bits)
        return (np.clip(q, 0, self.scale) if nonnegative else q).astype(np.int32)

    def decode(self, a: np.ndarray) -> np.ndarray:
        """Payloads -> float64 state units."""
        a = np.asarray(a, dtype=np.float64)
        return a / self.scale if self.fixed else a

    # ------------------------------------------------------------------ arithmetic
    def synaptic(self, acc: np.ndarray, weight_exp: int, bias: np.ndarray | int = 0) -> np.ndarray:
        """Finish a synaptic sum ``acc`` (compute dtype) plus ``bias`` into a payload.

        Fixed point: ``shift(rint(acc), weight_exp) + bias`` saturated to ``payload_bits``
        (lava's bit-accurate ``Dense`` shifts by the weight exponent the same way).
        """
        if not self.fixed:
            return (acc + bias).astype(self.np_dtype, copy=False)
        out = shift(np.rint(acc).astype(np.int64), weight_exp) + bias
        return saturate(out, self.payload_bits).astype(np.int32)

    def update(self, s: np.ndarray, u: np.ndarray, gain: float, dt: float) -> np.ndarray:
        """``s <- (1 - dt) s + dt clamp(g u, 0, 1)`` in payload units."""
        if not self.fixed:
            target = np.clip(u * gain, 0.0, 1.0)
            return target if dt == 1.0 else s + dt * (target - s)
        u = saturate(u.astype(np.int64), self.payload_bits)  # the dendritic sum of forward + feedback
        target = np.clip(shift(u, self.gain_shift), 0, self.scale)
        old = s.astype(np.int64)
        new = target if self.dt_shift == 0 else old + shift(target - old, -self.dt_shift)
        return new.astype(np.int32)

    def residual(self, new: np.ndarray, old: np.ndarray, dt: float) -> np.ndarray:
        """Per-sample ``max |new - old| / dt`` in state units ``(B,)`` float64."""
        diff = np.abs(new.astype(np.float64) - old).reshape(new.shape[0], -1).max(1)
        return diff / (dt * self.scale)

    def threshold(self, t: float) -> float:
        """A delta threshold in state units as payload units."""
        return t * self.scale


__all__ = ["FLOAT_DTYPES", "PRECISIONS", "Numerics"]
