"""The ideal crossbar reproduces the digital matrix products."""

from __future__ import annotations

import pytest
import torch
from crossbar_weights import random_weights

from ephw.crossbar import CrossbarArray, load_params

TILES = [(256, 256), (16, 16), (7, 5), (1, 3), (64, 1), (53, 37)]


def _max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("tiles", TILES)
@pytest.mark.parametrize("scale", ["tile", "column"])
def test_ideal_reads_equal_matmul(dtype: torch.dtype, tol: float, tiles: tuple[int, int], scale: str) -> None:
    W = random_weights(37, 53, dtype=dtype)
    params = load_params(
        "ideal", overrides=[f"mapping.tile_rows={tiles[0]}", f"mapping.tile_cols={tiles[1]}", f"mapping.scale={scale}"]
    )
    chip = CrossbarArray.program(W, params)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 53, generator=g, dtype=dtype)
    v = torch.randn(4, 37, generator=g, dtype=dtype)
    y, z = chip.read(x), chip.read_transposed(v)
    assert y.shape == (2, 3, 37) and z.shape == (4, 53)
    assert y.dtype == dtype and z.dtype == dtype
    assert _max_rel_err(y, x @ W.T) < tol
    assert _max_rel_err(z, v @ W) < tol
    assert _max_rel_err(chip.effective_weights(), W) < tol


@pytest.mark.parametrize("scale", ["tile", "column"])
def test_per_tile_converter_path_is_exact_without_quantisation(scale: str) -> None:
    # A clip-only ADC that never clips forces the per-tile path (DAC codes, tile sums, ADC, rescale).
    W = random_weights(37, 53)
    params = load_params(
        "ideal",
        overrides=[
            "mapping.tile_rows=16",
            "mapping.tile_cols=10",
            f"mapping.scale={scale}",
            "dac_forward.bound=1e6",
            "adc_forward.bound=1e9",
            "dac_transposed.bound=1e6",
            "adc_transposed.bound=1e9",
        ],
    )
    chip = CrossbarArray.program(W, params)
    x, v = torch.rand(5, 53, dtype=torch.float64), torch.randn(5, 37, dtype=torch.float64)
    assert _max_rel_err(chip.read(x), x @ W.T) < 1e-12
    assert _max_rel_err(chip.read_transposed(v), v @ W) < 1e-12


def test_ideal_with_offset_conductance_window() -> None:
    W = random_weights(20, 30)
    chip = CrossbarArray.program(W, load_params("ideal", overrides=["conductance.g_min=10", "conductance.g_max=60"]))
    x = torch.rand(3, 30, dtype=torch.float64)
    assert _max_rel_err(chip.read(x), x @ W.T) < 1e-12


def test_ideal_is_deterministic_and_zero_weights_are_fine() -> None:
    W = random_weights(8, 12)
    W[:, :4] = 0.0  # an all-zero tile column block
    params = load_params("ideal", overrides=["mapping.tile_rows=4", "mapping.scale=column"])
    chip = CrossbarArray.program(W, params)
    x = torch.rand(3, 12, dtype=torch.float64)
    assert torch.equal(chip.read(x), chip.read(x))
    assert _max_rel_err(chip.read(x), x @ W.T) < 1e-12


def test_chip_follows_weight_dtype_and_input_dtype() -> None:
    W = random_weights(6, 9, dtype=torch.float32)
    chip = CrossbarArray.program(W, load_params("ideal"))
    assert chip.dtype == torch.float32 and chip.device == W.device
    y = chip.read(torch.rand(2, 9, dtype=torch.float64))
    assert y.dtype == torch.float64
    assert chip.shape == (6, 9) and chip.n_devices == 2 * 6 * 9 and chip.n_tiles == 1


def test_bad_inputs_raise_input_error() -> None:
    from ephw.errors import InputError

    chip = CrossbarArray.program(random_weights(6, 9), load_params("ideal"))
    with pytest.raises(InputError, match=r"\(\.\.\., 9\)"):
        chip.read(torch.rand(2, 8, dtype=torch.float64))
    with pytest.raises(InputError, match=r"\(\.\.\., 6\)"):
        chip.read_transposed(torch.rand(2, 9, dtype=torch.float64))
    with pytest.raises(InputError):
        CrossbarArray.program(torch.randn(3, 4, 5))
    with pytest.raises(InputError):
        CrossbarArray.program(torch.tensor([[float("nan")]]))
