"""The energy model: drives are exact gradients of Phi; E and Phi are consistent."""

from __future__ import annotations

import pytest
import torch

from ephw.errors import ConfigError, InputError
from ephw.model import ConvSpec, EnergyModel, ModelConfig, named_config

MODES = [(o, a) for o in ("softmax", "mse") for a in ("clamp", "laborieux")]


def random_states(net, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, *s, generator=g, dtype=torch.float64) for s in net.state_shapes()]


@pytest.mark.parametrize("output,activation", MODES)
@pytest.mark.parametrize("beta", [0.0, 0.4, -0.4])
def test_drive_equals_autograd_of_phi(net_factory, batch_factory, output, activation, beta):
    net = net_factory(output, activation)
    x, y = batch_factory()
    states = random_states(net, x.shape[0])
    drives, phi = net.drives(x, states, beta, y)
    leaves = [s.clone().requires_grad_() for s in states]
    grads = torch.autograd.grad(net.phi(x, leaves, beta, y).sum(), leaves)
    for d, g in zip(drives, grads):
        assert torch.allclose(d, g, atol=1e-10, rtol=0)
    assert torch.allclose(phi, net.phi(x, states, beta, y), atol=1e-12)


def test_partial_drives_match_full(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    states = random_states(net, x.shape[0])
    full, _ = net.drives(x, states)
    part, _ = net.drives(x, states, layers=[1])
    assert part[0] is None and part[2] is None
    assert torch.equal(part[1], full[1])


def test_phi_is_bilinear_form_of_eq1(net_factory, batch_factory):
    """Phi written out by hand for the tiny net: sum_n s^n . P(w_n * s^{n-1})."""
    net = net_factory(dense=())
    x, _ = batch_factory()
    s1, s2 = random_states(net, x.shape[0])
    pool = torch.nn.functional.max_pool2d
    s0 = net.normalize(x)
    want = (s1 * pool(net.convs[0](s0), 2)).sum((1, 2, 3)) + (s2 * pool(net.convs[1](s1), 2)).sum((1, 2, 3))
    assert torch.allclose(net.phi(x, [s1, s2]), want, atol=1e-12)


@pytest.mark.parametrize("activation,gain", [("clamp", 1.0), ("laborieux", 0.5)])
def test_energy_and_activation(net_factory, batch_factory, activation, gain):
    net = net_factory(activation=activation)
    x, _ = batch_factory()
    states = random_states(net, x.shape[0])
    quad = sum(s.pow(2).flatten(1).sum(1) for s in states) / (2 * gain)
    assert torch.allclose(net.energy(x, states), quad - net.phi(x, states), atol=1e-12)
    u = torch.linspace(-3, 3, 13, dtype=torch.float64)
    assert torch.equal(net.activation(u), (gain * u).clamp(0, 1))


def test_feedback_routes_through_pooling_argmax(batch_factory):
    """A one-hot upper state sends feedback only to the argmax position of its pooling window."""
    torch.manual_seed(3)
    cfg = ModelConfig(in_shape=(1, 4, 4), convs=(ConvSpec(1, 1), ConvSpec(1, 1)), classes=2)
    net = EnergyModel(cfg).double()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    s1 = torch.rand(1, 1, 2, 2, dtype=torch.float64)
    s2 = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    s2[0, 0, 0, 0] = 1.0
    with torch.no_grad():
        net.convs[1].weight.zero_()
        net.convs[1].weight[0, 0, 1, 1] = 1.0  # identity conv: feedback = unpool(s2)
        net.convs[1].bias.zero_()
    drives, _ = net.drives(x, [s1, s2])
    fwd = torch.nn.functional.max_pool2d(net.convs[0](net.normalize(x)), 2)
    feedback = drives[0] - fwd
    k = int(s1.flatten().argmax())
    expected = torch.zeros(4, dtype=torch.float64)
    expected[k] = 1.0
    assert torch.allclose(feedback.flatten(), expected, atol=1e-12)


def test_named_configs_shapes():
    paper = named_config("paper")
    assert [c.channels for c in paper.convs] == [128, 256, 512, 512]
    assert [c.padding for c in paper.convs] == [1, 1, 1, 0]
    assert paper.feature_shapes()[-2:] == [(512, 1, 1), (10,)]
    small = named_config("cpu-small", classes=100)
    assert small.feature_shapes()[-1] == (100,) and [c.padding for c in small.convs] == [1, 1, 1, 0]
    digits = EnergyModel(named_config("digits"))
    assert digits.config.in_shape == (1, 8, 8) and digits.n_states == 2
    mse = EnergyModel(named_config("digits", output="mse"))
    assert mse.state_shapes()[-1] == (10,)


def test_config_roundtrip_and_validation():
    cfg = named_config("cpu-small")
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model config"):
        named_config("huge")
    with pytest.raises(ConfigError, match="activation"):
        cfg.with_(activation="relu")
    with pytest.raises(ConfigError, match="to nothing"):
        ModelConfig(in_shape=(1, 4, 4), convs=(ConvSpec(2, 0), ConvSpec(2, 0)))


def test_bad_inputs_are_named(net_factory):
    net = net_factory()
    with pytest.raises(InputError, match=r"expected images of shape \(B, 1, 8, 8\), got \(2, 3, 8, 8\)"):
        net.check_input(torch.zeros(2, 3, 8, 8, dtype=torch.float64))
    bad = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        net.check_input(bad)
    with pytest.raises(InputError, match="floating point"):
        net.check_input(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
