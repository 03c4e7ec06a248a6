"""Asynchronous (even/odd) backend: same fixed point as Euler, fewer steps, energy descent."""

from __future__ import annotations

import pytest
import torch

from ephw import settle

MODES = [(o, a) for o in ("softmax", "mse") for a in ("clamp", "laborieux")]


@pytest.mark.parametrize("output,activation", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_async_and_euler_reach_the_same_fixed_point(net_factory, batch_factory, output, activation, seed):
    net = net_factory(output, activation, seed=seed)
    x, _ = batch_factory(seed=seed)
    e = settle(net, x, "euler", steps=5000, tol=1e-12)
    a = settle(net, x, "async", steps=5000, tol=1e-12)
    assert bool(e.converged.all()) and bool(a.converged.all())
    for p, q in zip(e.states, a.states):
        assert (p - q).abs().max() <= 1e-6
    assert a.steps < e.steps


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_async_sweeps_never_increase_energy(net_factory, batch_factory, beta):
    net = net_factory("softmax", "clamp", init_scale=2.0)
    x, y = batch_factory()
    res = settle(net, x, "async", steps=300, tol=None, beta=beta, target=y)
    e = res.energies
    assert (e[1:] - e[:-1]).max() <= 1e-12 * e.abs().max()


def test_async_uses_fresh_neighbours(net_factory, batch_factory):
    """After one sweep from zero, the even layers already see the updated odd layers."""
    net = net_factory(dense=())
    x, _ = batch_factory()
    res = settle(net, x, "async", steps=1, tol=None)
    s1 = net.activation(net.drives(x, net.zeros(x), layers=[0])[0][0])
    assert torch.allclose(res.states[0], s1)
    s2 = net.activation(net.drives(x, [s1, torch.zeros_like(res.states[1])], layers=[1])[0][1])
    assert torch.allclose(res.states[1], s2)
