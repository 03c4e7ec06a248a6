"""EP gradient = recurrent-backprop gradient (Scellier & Bengio 2017; Laborieux's check_gdu)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ephw.training import ep_gradient, ep_step


def implicit_gradient(net, x, y, states):
    """dL/dtheta at the fixed point s* = sigma(dPhi/ds*) by the implicit function theorem.

    With F(s, theta) = sigma(dPhi/ds) and J = dF/ds at s*:
    dL/dtheta = dL/dtheta|direct + (I - J)^{-T} dL/ds . dF/dtheta.
    """
    shapes = [s.shape for s in states]
    sizes = [s.numel() for s in states]
    flat = torch.cat([s.flatten() for s in states]).detach()

    def unflat(v):
        return [c.view(sh) for c, sh in zip(v.split(sizes), shapes)]

    def fixed_point_map(v):
        drives, _ = net.drives(x, unflat(v))
        return torch.cat([net.activation(u).flatten() for u in drives])

    jac = torch.autograd.functional.jacobian(fixed_point_map, flat)
    params = list(net.parameters())
    v = flat.clone().requires_grad_()
    grads = torch.autograd.grad(net.loss(unflat(v), y).mean(), [v, *params], allow_unused=True)
    adjoint = torch.linalg.solve(torch.eye(flat.numel(), dtype=flat.dtype) - jac.T, grads[0])
    indirect = torch.autograd.grad(fixed_point_map(flat), params, grad_outputs=adjoint, allow_unused=True)
    return [
        (d if d is not None else torch.zeros_like(p)) + (i if i is not None else torch.zeros_like(p))
        for p, d, i in zip(params, grads[1:], indirect)
    ]


def per_layer(net, grads):
    """Concatenate weight and bias gradients of each synapse layer."""
    it = iter(grads)
    out = []
    for layer in net.synapses:
        out.append(torch.cat([next(it).flatten() for _ in layer.parameters()]))
    return out


@pytest.mark.parametrize("output", ["softmax", "mse"])
@pytest.mark.parametrize("activation", ["clamp", "laborieux"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ep_gradient_matches_implicit_gradient(net_factory, batch_factory, output, activation, seed):
    net = net_factory(output, activation, seed=seed)
    x, y = batch_factory(n=8, seed=seed)
    step = ep_step(net, x, y, backend="async", beta=1e-3, free_steps=5000, nudge_steps=5000, tol=1e-14)
    assert bool(step.free.converged.all())
    ref = implicit_gradient(net, x, y, step.free.states)
    for i, (a, b) in enumerate(zip(per_layer(net, step.grads), per_layer(net, ref))):
        assert b.norm() > 1e-8, f"layer {i}: reference gradient vanishes (dead net)"
        cos = F.cosine_similarity(a, b, dim=0).item()
        assert cos >= 0.999, f"layer {i}: cosine {cos:.6f}"


@pytest.mark.parametrize("backend,output", [("sor", "softmax"), ("asor", "softmax"), ("anderson", "mse")])
def test_ep_gradient_matches_implicit_gradient_with_accelerated_solvers(net_factory, batch_factory, backend, output):
    net = net_factory(output, "laborieux", seed=0)
    x, y = batch_factory(n=8, seed=0)
    step = ep_step(net, x, y, backend=backend, beta=1e-3, free_steps=5000, nudge_steps=5000, tol=1e-14)
    assert bool(step.free.converged.all() and step.plus.converged.all() and step.minus.converged.all())
    ref = implicit_gradient(net, x, y, step.free.states)
    for i, (a, b) in enumerate(zip(per_layer(net, step.grads), per_layer(net, ref))):
        cos = F.cosine_similarity(a, b, dim=0).item()
        assert cos >= 0.999, f"layer {i}: cosine {cos:.6f}"


def test_ep_estimate_is_second_order_in_beta(net_factory, batch_factory):
    """Symmetric nudging: the error shrinks ~ beta^2 (one-sided nudging would be ~ beta)."""
    net = net_factory("mse", "clamp")
    x, y = batch_factory(n=8)
    free = ep_step(net, x, y, backend="euler", beta=1e-3, free_steps=5000, nudge_steps=5000, tol=1e-14).free
    ref = torch.cat([g.flatten() for g in implicit_gradient(net, x, y, free.states)])
    errors = []
    for beta in (0.2, 0.1):
        s = ep_step(net, x, y, backend="euler", beta=beta, free_steps=5000, nudge_steps=5000, tol=1e-14)
        errors.append((torch.cat([g.flatten() for g in s.grads]) - ref).norm().item())
    assert errors[1] < errors[0] / 3.0


def test_ep_gradient_descends_the_loss(net_factory, batch_factory):
    net = net_factory("softmax", "laborieux")
    x, y = batch_factory(n=8)
    step = ep_step(net, x, y, backend="async", beta=0.1, free_steps=3000, nudge_steps=3000, tol=1e-12)
    before = net.loss(step.free.states, y).mean()
    with torch.no_grad():
        for p, g in zip(net.parameters(), step.grads):
            p.sub_(0.05 * g)
    after_states = ep_step(net, x, y, backend="async", beta=0.1, free_steps=3000, nudge_steps=1, tol=1e-12).free.states
    assert net.loss(after_states, y).mean() < before


def test_ep_gradient_uses_both_nudged_states(net_factory, batch_factory):
    net = net_factory()
    x, y = batch_factory()
    states = [torch.rand(x.shape[0], *s, dtype=torch.float64) for s in net.state_shapes()]
    grads = ep_gradient(net, x, y, states, states, 0.5)
    # identical nudged states: only the readout's loss term survives (the mean of dL/dW)
    assert all(g.abs().max() == 0 for g in grads[:-2])
    assert grads[-2].abs().max() > 0


@pytest.mark.parametrize("output", ["softmax", "mse"])
def test_positive_nudging_matches_implicit_gradient_as_beta_vanishes(net_factory, batch_factory, output):
    """One-sided EP: -(dPhi_beta(s^beta) - dPhi(s*))/beta tends to the recurrent-backprop gradient (bias O(beta))."""
    net = net_factory(output, "laborieux", seed=0)
    x, y = batch_factory(n=8, seed=0)
    errors = []
    for beta in (1e-2, 1e-3):
        step = ep_step(
            net, x, y, backend="async", beta=beta, free_steps=5000, nudge_steps=5000, tol=1e-14, nudging="positive"
        )
        assert step.minus is None and bool(step.plus.converged.all())
        ref = implicit_gradient(net, x, y, step.free.states)
        a, b = torch.cat([g.flatten() for g in step.grads]), torch.cat([g.flatten() for g in ref])
        errors.append(((a - b).norm() / b.norm()).item())
    assert errors[1] < 0.01
    assert errors[1] < errors[0] / 5  # first order: ten times smaller beta, ~ten times smaller error


def test_free_phase_from_a_carried_state_reaches_the_same_fixed_point(net_factory, batch_factory):
    """A free phase started near the fixed point (carried states) converges there in fewer sweeps."""
    net = net_factory("softmax", "laborieux", seed=0)
    x, y = batch_factory(n=8, seed=0)
    cold = ep_step(net, x, y, backend="async", beta=0.1, free_steps=5000, nudge_steps=50, tol=1e-10)
    warm = ep_step(
        net, x, y, backend="async", beta=0.1, free_steps=5000, nudge_steps=50, tol=1e-10, init=cold.free.states
    )
    assert warm.free.steps < cold.free.steps
    for a, b in zip(warm.free.states, cold.free.states):
        assert torch.allclose(a, b, atol=1e-8)
    for a, b in zip(warm.grads, cold.grads):
        assert torch.allclose(a, b, atol=1e-6)
