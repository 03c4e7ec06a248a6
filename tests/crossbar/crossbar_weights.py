"""Weight matrices shared by the crossbar tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import torch


def random_weights(out_f: int, in_f: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Gaussian weights ``(out, in)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out_f, in_f, generator=g, dtype=dtype)


def bounded_weights(out_f: int, in_f: int, lo: float = 0.3, seed: int = 0) -> torch.Tensor:
    """Weights with random signs and magnitudes in ``[lo, 1]`` (float64): one device per pair is well above g_min."""
    g = torch.Generator().manual_seed(seed)
    mag = lo + (1 - lo) * torch.rand(out_f, in_f, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(out_f, in_f, generator=g) < 0.5, -1.0, 1.0).double()
    w = sign * mag
    w[0, 0] = 1.0  # pin max|w| = 1 so that s = span in every tile containing it
    return w
