"""First-order IR drop against an exact nodal solution of the resistive network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from crossbar_weights import bounded_weights

from ephw.crossbar import CrossbarArray, load_params
from ephw.crossbar.irdrop import attenuation, line_load


def _solve(g_us: np.ndarray, r: float, drive: np.ndarray, transposed: bool = False) -> np.ndarray:
    """Exact sensed currents of a ``R × L`` crossbar (µS devices, ``r`` Ω segments).

    Forward: word line i driven at ``drive[i]`` volts through a segment at its column-0 end,
    bit lines at virtual ground through a segment at their row-0 end; returns the ``L``
    bit-line currents. Transposed: bit lines driven at the row-0 end, word lines sensed at
    the column-0 end; returns the ``R`` word-line currents.
    """
    R, L = g_us.shape
    g = g_us * 1e-6
    gw = 1.0 / r
    n = 2 * R * L
    wl = lambda i, j: i * L + j  # noqa: E731
    bl = lambda i, j: R * L + i * L + j  # noqa: E731
    A = np.zeros((n, n))
    b = np.zeros(n)

    def link(a: int, c: int, cond: float) -> None:
        A[a, a] += cond
        A[c, c] += cond
        A[a, c] -= cond
        A[c, a] -= cond

    for i in range(R):
        for j in range(L):
            link(wl(i, j), bl(i, j), g[i, j])
            if j + 1 < L:
                link(wl(i, j), wl(i, j + 1), gw)
            if i + 1 < R:
                link(bl(i, j), bl(i + 1, j), gw)
    # end segments: to a source (voltage v) or to virtual ground (v = 0)
    for i in range(R):
        A[wl(i, 0), wl(i, 0)] += gw
        if not transposed:
            b[wl(i, 0)] += gw * drive[i]
    for j in range(L):
        A[bl(0, j), bl(0, j)] += gw
        if transposed:
            b[bl(0, j)] += gw * drive[j]
    v = np.linalg.solve(A, b)
    if transposed:
        return np.array([gw * v[wl(i, 0)] for i in range(R)])
    return np.array([gw * v[bl(0, j)] for j in range(L)])


def test_line_load_matches_its_definition() -> None:
    g = torch.rand(3, 7, 5, dtype=torch.float64)
    for dim in (-1, -2):
        n = g.shape[dim]
        k = torch.arange(n)
        weights = (torch.minimum(k[:, None], k[None, :]) + 1).double()  # [j, k]
        brute = torch.movedim(torch.movedim(g, dim, -1) @ weights.T, -1, dim)
        assert torch.allclose(line_load(g, dim), brute, rtol=1e-12)


def test_first_order_model_matches_the_exact_network() -> None:
    rng = np.random.default_rng(0)
    R, L, r = 6, 8, 2.0
    g = rng.uniform(1.0, 25.0, size=(R, L))
    x = rng.uniform(0.0, 1.0, size=R)
    ideal = x @ g * 1e-6
    exact = _solve(g, r, x)
    model = x @ (g * attenuation(torch.from_numpy(g), r).numpy()) * 1e-6
    drop = ideal - exact
    assert float((drop / ideal).max()) > 1e-4  # a visible drop ...
    assert float(np.abs(model - exact).max()) < 0.02 * float(np.abs(drop).max())  # ... captured to first order


def test_transposed_read_is_reciprocal() -> None:
    rng = np.random.default_rng(1)
    R, L, r = 5, 4, 50.0
    g = rng.uniform(1.0, 25.0, size=(R, L))
    forward = np.stack([_solve(g, r, e) for e in np.eye(R)])  # [i, j]: row i driven, column j sensed
    backward = np.stack([_solve(g, r, e, transposed=True) for e in np.eye(L)])  # [j, i]
    assert np.allclose(forward, backward.T, rtol=1e-10, atol=0)


def test_ir_drop_in_the_array() -> None:
    W = torch.ones(64, 64, dtype=torch.float64)  # uniform conductances: the drop grows away from the periphery
    params = load_params(overrides=["ir_drop.enabled=true", "ir_drop.wire_resistance_ohm=0.5", "mapping.tile_rows=32"])
    w = CrossbarArray.program(W, params).effective_weights()
    assert bool((w < 1).all()) and bool((w > 0).all())
    tile = w[:64, :32]  # (out, in): outputs are bit lines (columns), inputs are word lines (rows)
    assert bool((tile[:, 1:] < tile[:, :-1]).all())  # farther from the sense amplifiers
    assert bool((tile[1:, :] < tile[:-1, :]).all())  # farther from the drivers
    zero_r = CrossbarArray.program(W, params.replace(**{"ir_drop.wire_resistance_ohm": 0.0}))
    assert torch.equal(zero_r.effective_weights(), W)


@pytest.mark.parametrize("scale", ["tile", "column"])
def test_ir_drop_grows_with_the_line_current(scale: str) -> None:
    W = bounded_weights(32, 32)
    params = load_params(overrides=["ir_drop.enabled=true", f"mapping.scale={scale}"])
    small = CrossbarArray.program(W, params.replace(**{"conductance.g_max": 5.0})).effective_weights()
    large = CrossbarArray.program(W, params.replace(**{"conductance.g_max": 50.0})).effective_weights()
    assert float((small - W).abs().max()) < float((large - W).abs().max())
