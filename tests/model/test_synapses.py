"""Synapse operators: the adjoint is the transpose of the forward map; models accept custom ops."""

from __future__ import annotations

import torch

from ephw.model import DigitalSynapses


def test_digital_adjoint_is_transpose_of_forward(net_factory, probes):
    net = net_factory()
    ops = DigitalSynapses(net.synapses)
    for j, src, out, v in probes(net, ops):
        lhs = (out * v).sum()
        rhs = (src * ops.adjoint(j, v, src)).sum()
        assert torch.allclose(lhs, rhs, rtol=1e-12), j


def test_custom_synapses_change_the_drive(net_factory, batch_factory):
    """A backend's operators are used for every forward and feedback term."""

    class Doubled(DigitalSynapses):
        def forward(self, j, src):
            return 2.0 * super().forward(j, src)

        def adjoint(self, j, v, src):
            return 2.0 * super().adjoint(j, v, src)

    net = net_factory(dense=())
    x, _ = batch_factory()
    states = [torch.rand(x.shape[0], *s, dtype=torch.float64) for s in net.state_shapes()]
    plain, phi = net.drives(x, states)
    doubled, phi2 = net.drives(x, states, synapses=Doubled(net.synapses))
    for a, b in zip(plain, doubled):
        assert torch.allclose(2 * a, b)
    assert torch.allclose(2 * phi, phi2)
