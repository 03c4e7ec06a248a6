"""EP classifier: prediction = full settle in every mode; the gradient modes' backward passes."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ephw.backends import settle
from ephw.errors import ConfigError
from ephw.robustness.attacks import AttackSpec, run_attack
from ephw.robustness.gradients import GradMode, parse_grad, parse_grads
from ephw.robustness.models import DEFAULT_GRAD, Classifier, EPClassifier, ModelSpec

MODES = ["bptt:30", "bptt:30:fixed", "implicit", "bpda"]


def _classifier(net_factory, backend, grad):
    net = net_factory("softmax", "laborieux", seed=1, init_scale=2.0)
    return EPClassifier(net, backend, steps=5000, tol=1e-13, grad=grad)


def _input_grad(clf, x, w):
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad((clf(xg) * w).sum(), xg, allow_unused=True)
    return torch.zeros_like(x) if g is None else g  # None: the surrogate never reaches x


@pytest.mark.parametrize("grad", MODES)
def test_forward_is_the_full_settle_in_every_mode(net_factory, batch_factory, grad):
    clf = _classifier(net_factory, "async", grad)
    x, _ = batch_factory(n=5)
    ref = settle(clf.net, x, "async", steps=5000, tol=1e-13).logits
    assert torch.equal(clf(x), ref)
    out = clf(x.clone().requires_grad_())  # with a graph: same values, straight-through
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    assert clf.settle_stats.unconverged == 0


@pytest.mark.parametrize("backend", ["euler", "async"])
def test_implicit_gradient_matches_finite_differences(net_factory, batch_factory, backend):
    clf = _classifier(net_factory, backend, "implicit")
    clf.grad = GradMode("implicit", max_iter=5000, tol=1e-12)
    x, _ = batch_factory(n=4, seed=3)
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = _input_grad(clf, x, w)
    assert g.abs().max() > 1e-6, "gradient vanished: the test would prove nothing"
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fd = ((clf(x + h * d) * w).sum() - (clf(x - h * d) * w).sum()) / (2 * h)
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=1e-4, abs=1e-9)
    assert all(clf.adjoint_stats.converged)


def test_bptt_from_the_fixed_point_converges_to_the_implicit_gradient(net_factory, batch_factory):
    x, _ = batch_factory(n=4, seed=3)
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _input_grad(_classifier(net_factory, "async", GradMode("implicit", max_iter=5000, tol=1e-12)), x, w)
    errs = []
    for k in (2, 6, 300):
        g = _input_grad(_classifier(net_factory, "async", f"bptt:{k}:fixed"), x, w)
        errs.append(float((g - ref).norm() / ref.norm()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-8  # a truncated Neumann series of (I - J)^-1


def test_bpda_reaches_the_input_through_every_layer(net_factory, batch_factory):
    clf = _classifier(net_factory, "async", "bpda")
    x, y = batch_factory(n=6)
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(clf(xg), y), xg)
    assert (g.flatten(1).abs().amax(1) > 0).all()


def test_parse_grad():
    assert parse_grad("bptt:29") == GradMode("bptt", k=29)
    assert parse_grad("bptt:70:fixed").start == "fixed"
    assert parse_grad("implicit:900").max_iter == 900
    assert parse_grad("bpda").label == "bpda" and parse_grad("bptt:5:fixed").label == "bptt:5:fixed"
    for bad in ("bptt", "bptt:0", "bptt:x", "bptt:3:middle", "newton", "bpda:3"):
        with pytest.raises(ConfigError):
            parse_grad(bad)


def test_parse_grads_lists_the_restart_modes():
    assert parse_grads("bptt:5,bptt:29") == (GradMode("bptt", k=5), GradMode("bptt", k=29))
    assert parse_grads(GradMode("implicit")) == (GradMode("implicit"),)
    assert ModelSpec("ep").grad == DEFAULT_GRAD and len(parse_grads(DEFAULT_GRAD)) == 2
    for bad in ("bptt:5,", ",bptt:5", "bptt:5,nope"):
        with pytest.raises(ConfigError, match="invalid --grad"):
            parse_grads(bad)
    with pytest.raises(ConfigError, match="invalid --grad"):
        ModelSpec("ep", grad="bptt:5,bptt:x")


def test_pgd_restarts_cycle_through_the_gradient_modes(net_factory, batch_factory):
    net = net_factory("softmax", "laborieux", seed=1, init_scale=2.0)
    ep = EPClassifier(net, "async", steps=200, tol=1e-6, grad="bptt:2,bptt:7,implicit")
    used: list[str] = []  # the mode of every gradient query, in order
    forward = ep.forward

    def spy(x):
        if x.requires_grad:
            used.append(ep.grad.label)
        return forward(x)

    ep.forward = spy
    x, _ = batch_factory(6)
    clf = Classifier("ep", ep, "ep")
    y = clf.predict(x)  # a tiny eps breaks nothing, so every restart runs on every image
    spec = AttackSpec("p", "pgd", "L2", (1e-4,), steps=2, rel_stepsize=1.0, restarts=4)
    out = run_attack(clf, spec, x, y, 1e-4, seed=0, restarts=range(1, 5))  # restarts 1..4 (a doubled run)
    assert out.notes["restart_grads"] == ["bptt:7", "implicit", "bptt:2", "bptt:7"]
    assert [k for k, _ in itertools.groupby(used)] == ["bptt:7", "implicit", "bptt:2", "bptt:7"]
    assert len(used) == 4 * 2  # one gradient per PGD step
    assert ep.grad.label == "bptt:2" and ep.grad_label == "bptt:2,bptt:7,implicit"  # first mode restored
