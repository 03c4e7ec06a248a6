"""Crossbar backend: ideal arrays reproduce the digital physics; both read directions share one chip."""

from __future__ import annotations

import torch

from ephw import settle
from ephw.backends import Crossbar
from ephw.backends.crossbar import CrossbarSynapses
from ephw.crossbar import load_params


def test_ideal_crossbar_reproduces_digital_fixed_point(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    digital = settle(net, x, "euler", steps=3000, tol=1e-11)
    analog = settle(net, x, "crossbar", steps=3000, tol=1e-11)  # preset ideal
    assert analog.converged.all()
    for a, b in zip(digital.states, analog.states):
        assert (a - b).abs().max() < 1e-9


def test_drives_through_ideal_crossbar_equal_exact_drives(net_factory, batch_factory):
    net = net_factory("mse")
    x, y = batch_factory()
    states = [torch.rand(x.shape[0], *s, dtype=torch.float64) for s in net.state_shapes()]
    ops = CrossbarSynapses(net, load_params("ideal"))
    exact, phi = net.drives(x, states, 0.3, y)
    analog, phi2 = net.drives(x, states, 0.3, y, synapses=ops)
    for a, b in zip(exact, analog):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(phi, phi2, atol=1e-12)


def test_forward_and_transposed_reads_use_the_same_programmed_chip(net_factory, probes):
    """With programming noise but noiseless reads, the feedback map is exactly the transpose of the forward map."""
    net = net_factory()
    ops = CrossbarSynapses(net, load_params("ideal", overrides=["programming_noise.rel=0.2", "chip_seed=3"]))
    for j, src, out, v in probes(net, ops):
        exact = net.digital.forward(j, src) - net.synapses[j].bias.view(1, -1, *[1] * (src.dim() - 2))
        assert (out - exact).abs().max() > 1e-3  # the chip is noisy ...
        assert torch.allclose((out * v).sum(), (src * ops.adjoint(j, v, src)).sum(), rtol=1e-10)  # ... and symmetric


def test_chip_is_programmed_once_and_reprogrammed_after_updates(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    backend = Crossbar(preset="pcm", reprogram_every=2)
    chip = backend.synapses(net)
    before = chip.arrays[0].effective_weights().clone()
    settle(net, x, backend, steps=5, tol=None)
    assert backend.synapses(net) is chip and chip.arrays[0].program_count == 0
    for update in (1, 2):
        with torch.no_grad():
            net.convs[0].weight.mul_(1.5)  # a training update
        assert backend.synapses(net) is chip
        assert chip.arrays[0].program_count == update // 2  # every 2nd update is written
    after = chip.arrays[0].effective_weights()
    target = net.convs[0].weight.detach().reshape(after.shape)
    assert (after - target).abs().mean() < (before - target).abs().mean()


def test_noisy_reads_settle_to_a_reported_noise_floor(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    res = settle(net, x, Crossbar(preset="ideal", overrides=["read_noise.proportional=0.02"]), steps=2000, tol=1e-9)
    assert res.converged.all() and res.steps < 2000  # stationary residual, not tol
    last = res.residuals[res.steps_per_sample - 1, torch.arange(x.shape[0])]
    assert (last > 1e-6).all()  # the floor is visible in the residual trace
