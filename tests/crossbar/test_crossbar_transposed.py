"""The transposed read goes through the very same programmed conductances."""

from __future__ import annotations

import pytest
import torch
from crossbar_weights import random_weights

from ephw.crossbar import CrossbarArray, load_params

CHIP = [
    "programming_noise.kind=gaussian",
    "programming_noise.rel=0.1",
    "programming_noise.abs_uS=0.2",
    "conductance.levels_bits=5",
    "variability.g_max_rel_std=0.05",
    "stuck_faults.p_gmin=0.02",
    "stuck_faults.p_gmax=0.01",
    "drift.enabled=true",
    "drift.t_seconds=3600",
    "ir_drop.enabled=true",
    "ir_drop.wire_resistance_ohm=2",
    "mapping.tile_rows=16",
    "mapping.tile_cols=12",
]


@pytest.mark.parametrize("scale", ["tile", "column"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_forward_and_transposed_reads_see_one_matrix(scale: str, dtype: torch.dtype, tol: float) -> None:
    W = random_weights(30, 41, dtype=dtype)
    chip = CrossbarArray.program(W, load_params(overrides=CHIP + [f"mapping.scale={scale}"]))
    forward = chip.read(torch.eye(41, dtype=dtype)).T  # column i = W_eff e_i
    transposed = chip.read_transposed(torch.eye(30, dtype=dtype))  # row j = e_j W_eff
    scale_ = float(forward.abs().max())
    assert float((forward - transposed).abs().max()) < tol * scale_
    assert float((forward - chip.effective_weights()).abs().max()) < tol * scale_
    assert float((forward - W).abs().max()) > 0.05 * scale_  # the chip is far from ideal


def test_column_scale_transposed_per_tile_path() -> None:
    # Fine transposed converters force the per-tile path, with the per-column input pre-scaling.
    W = random_weights(30, 41)
    W[:, 5] *= 20  # columns with very different full scales
    params = load_params(
        overrides=CHIP
        + ["mapping.scale=column", "dac_transposed.bits=20", "adc_transposed.bits=20", "adc_forward.bits=20"]
    )
    chip = CrossbarArray.program(W, params)
    v = torch.rand(3, 30, dtype=torch.float64)
    w_eff = chip.effective_weights()
    assert torch.allclose(chip.read_transposed(v), v @ w_eff, rtol=1e-4, atol=1e-4 * float((v @ w_eff).abs().max()))
    x = torch.rand(3, 41, dtype=torch.float64)
    assert torch.allclose(chip.read(x), x @ w_eff.T, rtol=1e-4, atol=1e-4 * float((x @ w_eff.T).abs().max()))
