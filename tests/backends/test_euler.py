"""Euler backend: energy descent along trajectories, fixed-point condition at convergence."""

from __future__ import annotations

import pytest
import torch

from ephw import settle

MODES = [(o, a) for o in ("softmax", "mse") for a in ("clamp", "laborieux")]


@pytest.mark.parametrize("output,activation", MODES)
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_small_dt_never_increases_energy(net_factory, batch_factory, output, activation, beta):
    net = net_factory(output, activation, init_scale=2.0)
    x, y = batch_factory()
    res = settle(net, x, "euler", steps=400, tol=None, beta=beta, target=y, dt=0.05)
    e = res.energies
    increase = (e[1:] - e[:-1]).max()
    assert increase <= 1e-12 * e.abs().max()
    assert e[-1].lt(e[0]).all()  # and it does go down


@pytest.mark.parametrize("output,activation", MODES)
def test_converged_state_satisfies_fixed_point_equation(net_factory, batch_factory, output, activation):
    net = net_factory(output, activation)
    x, _ = batch_factory()
    tol = 1e-9
    res = settle(net, x, "euler", steps=5000, tol=tol)
    assert bool(res.converged.all())
    drives, _ = net.drives(x, res.states)
    for s, u in zip(res.states, drives):
        assert (net.activation(u) - s).abs().max() <= tol
        assert s.min() >= 0 and s.max() <= 1


def test_dt_changes_path_not_fixed_point(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    a = settle(net, x, "euler", steps=5000, tol=1e-11)
    b = settle(net, x, "euler", steps=20000, tol=1e-11, dt=0.3)
    assert b.steps > a.steps
    for p, q in zip(a.states, b.states):
        assert torch.allclose(p, q, atol=1e-8)


def test_nudged_phase_moves_output_towards_target(net_factory, batch_factory):
    net = net_factory("mse")
    x, y = batch_factory()
    free = settle(net, x, "euler", steps=3000, tol=1e-10)
    nudged = settle(net, x, "euler", steps=3000, tol=1e-10, beta=0.5, target=y, init=free.states)
    before = net.loss(free.states, y)
    after = net.loss(nudged.states, y)
    assert (after < before).all()
