"""The EP-topology CNN: the teacher's state layout, the EP forward terms, valid warm starts."""

from __future__ import annotations

import pytest
import torch

from ephw.backends import settle
from ephw.errors import ConfigError
from ephw.feedforward import CNNSpec, EPTopologyCNN


def student_of(net, activation: str = "hard-sigmoid") -> EPTopologyCNN:
    return EPTopologyCNN(CNNSpec(net.config, activation)).double()


@pytest.mark.parametrize("output", ["softmax", "mse"])
def test_states_have_the_teacher_layout_then_logits(net_factory, batch_factory, output):
    net = net_factory(output)
    x, _ = batch_factory(5)
    with torch.no_grad():
        out = student_of(net).states(x)
    shapes = [(5, *s) for s in net.state_shapes()]
    assert [tuple(s.shape) for s in out[:-1]] == shapes
    assert tuple(out[-1].shape) == (5, 3)
    for s in out[:-1]:
        assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0
    if output == "mse":  # the output state is the hard sigmoid of the logits
        assert torch.equal(out[-2], net.activation(out[-1]))


def test_with_teacher_weights_the_first_layer_is_one_euler_step_from_the_null_state(net_factory, batch_factory):
    # s~^1 = act(P(w_1 * x + b_1)) is the EP drive of layer 1 when layer 2 is at rest
    net = net_factory(init_scale=3.0)
    x, _ = batch_factory(4)
    student = student_of(net)
    student.load_teacher_weights(net)
    first_step = settle(net, x, "euler", steps=1, tol=None).states
    assert torch.allclose(student.states(x)[0], first_step[0], atol=1e-12)
    assert float(first_step[0].abs().max()) > 0.05  # not trivially zero


def test_forward_is_the_logits_and_normalisation_is_inside(net_factory, batch_factory):
    net = net_factory()
    student = student_of(net)
    x, _ = batch_factory(3)
    assert torch.equal(student(x), student.states(x)[-1])
    shifted = EPTopologyCNN(CNNSpec(net.config.with_(input_mean=(0.5,), input_std=(0.25,)))).double()
    shifted.load_state_dict({**student.state_dict(), **{k: v for k, v in shifted.state_dict().items() if "input" in k}})
    assert torch.allclose(shifted(x), student((x - 0.5) / 0.25))


def test_settle_init_is_a_valid_warm_start(net_factory, batch_factory):
    net = net_factory()  # weak couplings: one fixed point per image
    x, _ = batch_factory(6)
    student = student_of(net, "relu-bn").eval()  # relu states exceed 1: settle_init clamps them
    init = student.settle_init(x)
    net.check_states(init, 6)
    assert all(float(s.min()) >= 0 and float(s.max()) <= 1 for s in init)
    cold = settle(net, x, "euler", steps=500, tol=1e-10)
    warm = settle(net, x, "euler", steps=500, tol=1e-10, init=init)
    assert bool(warm.converged.all())
    assert max(float((a - b).abs().max()) for a, b in zip(warm.states, cold.states)) < 1e-8
    # starting at the fixed point itself needs a single step
    assert settle(net, x, "euler", steps=500, tol=1e-8, init=cold.states).steps == 1


def test_relu_bn_has_batchnorm_per_hidden_layer_and_layer_groups(net_factory):
    net = net_factory()
    student = student_of(net, "relu-bn")
    assert len(student.norms) == 3  # conv, conv, dense
    groups = student.layer_groups()
    assert [name for name, _ in groups] == ["layer1", "layer2", "layer3", "layer4"]
    assert sum(p.numel() for _, ps in groups for p in ps) == sum(p.numel() for p in student.parameters())


def test_bad_activation_and_mismatched_teacher(net_factory):
    net = net_factory()
    with pytest.raises(ConfigError, match="activation"):
        CNNSpec(net.config, "tanh")
    other = net_factory(dense=(7,))
    with pytest.raises(ConfigError, match="shape"):
        student_of(net).load_teacher_weights(other)
