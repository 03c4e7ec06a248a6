"""Eq. 8 / Eq. 9 losses and the teacher's output distribution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ephw.backends import settle
from ephw.distill.losses import distill_loss, layer_weights, soft_cross_entropy
from ephw.distill.teacher import TeacherTargets, targets_from_result
from ephw.errors import ConfigError


def targets(hidden, output) -> TeacherTargets:
    return TeacherTargets(hidden, output, output.argmax(1), torch.ones(output.shape[0]), None)


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64)
    kl = F.kl_div(torch.log_softmax(logits, 1), p, reduction="batchmean")
    entropy = -(p * p.log()).sum(1).mean()
    assert torch.allclose(soft_cross_entropy(p, logits), kl + entropy)
    hard = F.one_hot(torch.tensor([0, 1, 2, 3, 0]), 4).double()
    assert torch.allclose(soft_cross_entropy(hard, logits), F.cross_entropy(logits, hard.argmax(1)))


def test_eq8_sums_weighted_layer_mses_and_ce_eq9_only_ce():
    g = torch.Generator().manual_seed(1)
    hidden_t = [torch.rand(3, 2, 4, 4, generator=g), torch.rand(3, 5, generator=g)]
    hidden_s = [torch.rand(3, 2, 4, 4, generator=g), torch.rand(3, 5, generator=g)]
    out = torch.softmax(torch.randn(3, 4, generator=g), 1)
    logits = torch.randn(3, 4, generator=g)
    t = targets(hidden_t, out)
    loss, parts = distill_loss(hidden_s, logits, t, [2.0, 3.0], ce_weight=0.5)
    mse = [((a - b) ** 2).mean() for a, b in zip(hidden_s, hidden_t)]
    ce = soft_cross_entropy(out, logits)
    assert torch.allclose(loss, 2 * mse[0] + 3 * mse[1] + 0.5 * ce)
    assert parts["mse1"] == pytest.approx(float(mse[0])) and parts["ce"] == pytest.approx(float(ce))
    loss9, parts9 = distill_loss(None, logits, t)
    assert torch.allclose(loss9, ce) and set(parts9) == {"ce"}
    # matching states exactly leaves only the CE term, whose gradient vanishes at logits = log p*
    logit = out.log().clone().requires_grad_()
    loss_exact, _ = distill_loss(hidden_t, logit, t)
    (grad,) = torch.autograd.grad(loss_exact, logit)
    assert float(grad.abs().max()) < 1e-6


def test_layer_weights_broadcast_and_errors():
    assert layer_weights((10.0,), 3) == [10.0, 10.0, 10.0]
    assert layer_weights((1, 2), 2) == [1.0, 2.0]
    with pytest.raises(ConfigError, match="1 or 2 values"):
        layer_weights((1, 2, 3), 2)


def test_teacher_output_is_softmax_of_fixed_point_logits(net_factory, batch_factory):
    net = net_factory("softmax")
    x, _ = batch_factory(4)
    res = settle(net, x, "euler", steps=200, tol=1e-9)
    t = targets_from_result(net, res)
    assert len(t.hidden) == net.n_states
    assert torch.allclose(t.output, torch.softmax(net.logits(res.states), 1))
    assert torch.equal(t.predictions, res.predictions)


def test_mse_teacher_output_is_the_normalised_output_state(net_factory, batch_factory):
    net = net_factory("mse", init_scale=2.0)
    x, _ = batch_factory(4)
    res = settle(net, x, "euler", steps=200, tol=1e-9)
    res.states[-1][0] = 0.0  # an all-zero output state gives a uniform target
    t = targets_from_result(net, res)
    assert len(t.hidden) == net.n_states - 1
    assert torch.allclose(t.output.sum(1), torch.ones(4, dtype=t.output.dtype))
    assert torch.allclose(t.output[0], torch.full((3,), 1 / 3, dtype=t.output.dtype))
    y = res.states[-1][1:]
    assert torch.allclose(t.output[1:], y / y.sum(1, keepdim=True))
