"""The chip follows the device of its weights (runs only where CUDA is available)."""

from __future__ import annotations

import pytest
import torch
from crossbar_weights import random_weights

from ephw.crossbar import CrossbarArray, get_preset, load_params

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("preset", ["ideal", "rram-illustrative", "pcm", "rram-wan2022"])
def test_reads_on_cuda(preset: str) -> None:
    W = random_weights(70, 130, dtype=torch.float32).cuda()
    params = get_preset(preset).replace(**{"mapping.tile_rows": 32, "mapping.tile_cols": 48, "ir_drop.enabled": True})
    chip = CrossbarArray.program(W, params)
    x, v = torch.rand(5, 130, device="cuda"), torch.rand(5, 70, device="cuda")
    y, z = chip.read(x), chip.read_transposed(v)
    assert y.device == W.device and z.device == W.device
    assert torch.isfinite(y).all() and torch.isfinite(z).all()
    again = CrossbarArray.program(W, params)
    assert torch.equal(chip.effective_weights(), again.effective_weights())
    assert torch.equal(again.read(x), CrossbarArray.program(W, params).read(x))


def test_ideal_on_cuda_matches_matmul() -> None:
    W = random_weights(37, 53).cuda()
    chip = CrossbarArray.program(W, load_params(overrides=["mapping.tile_rows=16", "adc_forward.bound=1e9"]))
    x = torch.rand(4, 53, dtype=torch.float64, device="cuda")
    assert torch.allclose(chip.read(x), x @ W.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("structure", ["frozen", "correlated"])
def test_read_noise_time_structures_on_cuda(structure: str) -> None:
    W = random_weights(70, 130, dtype=torch.float32).cuda()
    over = [f"read_noise.time_structure={structure}", "read_noise.proportional=0.05", "mapping.tile_rows=32"]
    chip = CrossbarArray.program(W, load_params(overrides=over))
    x = torch.rand(5, 130, device="cuda")
    a, b = chip.read(x), chip.read(x)
    assert a.device == W.device and torch.isfinite(a).all()
    assert torch.equal(a, b) == (structure == "frozen")
