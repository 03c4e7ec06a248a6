"""The published protocol (lanl/AdvEP) run by ART itself: deterministic, the box, the EP gradient ART
receives, settled predictions, which labels are attacked; its config and eps grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ephw
from ephw.backends import get_backend, settle
from ephw.errors import ConfigError, InputError
from ephw.robustness.art_protocol import art_classifier, run_art_pgd
from ephw.robustness.attacks import ART_UNROLL, ArtPGDSpec, AttackSpec, advep_eps_grid, run_attack
from ephw.robustness.config import EPS_GRIDS, config_from_dict
from ephw.robustness.models import Classifier, EPClassifier
from ephw.robustness.runner import read_rows, run_robustness

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits_ep() -> Classifier:
    """The bundled digits EP-CNN, settled as the digits examples settle it (async, tol 1e-4)."""
    return Classifier("EP-CNN", EPClassifier(ephw.load_model(), "async", steps=250, tol=1e-4), "ep")


@pytest.fixture(scope="module")
def student() -> Classifier:
    """The bundled digits student (Eq. 8 distilled feed-forward CNN)."""
    return Classifier("student", ephw.load_model("digits-distilled"), "feedforward")


def _spec(norm: str = "L2", eps: float = 0.4862, **kw) -> ArtPGDSpec:
    return ArtPGDSpec("advep", "art-pgd", norm, (eps,), **kw)


@pytest.mark.parametrize("which", ["digits_ep", "student"])
def test_two_runs_give_identical_images(request, images, which):
    model = request.getfixturevalue(which)
    x, y = images[0][:12], images[1][:12]
    a = run_attack(model, _spec(), x, y, 0.4862, seed=0)
    b = run_attack(model, _spec(), x, y, 0.4862, seed=5)  # no random start: the seed changes nothing
    assert torch.equal(a.adv, b.adv) and torch.equal(a.correct, b.correct)
    assert not torch.equal(a.adv, x)  # it did attack
    delta = (a.adv - x).flatten(1).norm(dim=1)
    assert float(delta.max()) <= 0.4862 * (1 + 1e-5)  # ART's projection onto the l2 ball


def test_random_starts_are_seeded_and_leave_numpys_generator_alone(student, images):
    x, y = images[0][:16], images[1][:16]
    spec = _spec(random_start=True, restarts=2)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = run_attack(student, spec, x, y, 0.4862, seed=1)
    assert np.array_equal(np.random.get_state()[1], before)
    b = run_attack(student, spec, x, y, 0.4862, seed=1)
    c = run_attack(student, spec, x, y, 0.4862, seed=2)
    assert torch.equal(a.adv, b.adv) and not torch.equal(a.adv, c.adv)
    assert a.notes["art"]["num_random_init"] == 2


def test_clip_none_leaves_the_unit_box_and_unit_box_does_not(digits_ep, images):
    x, y = images[0][:12], images[1][:12]
    free = run_attack(digits_ep, _spec(eps=1.0), x, y, 1.0, seed=0)
    boxed = run_attack(digits_ep, _spec(eps=1.0, clip="unit-box"), x, y, 1.0, seed=0)
    assert float(free.adv.min()) < 0 or float(free.adv.max()) > 1
    assert free.notes["outside_unit_box"] > 0 and free.notes["art"]["clip_values"] is None
    assert float(boxed.adv.min()) >= 0 and float(boxed.adv.max()) <= 1
    assert boxed.notes["outside_unit_box"] == 0 and boxed.notes["art"]["clip_values"] == [0.0, 1.0]
    # the settled verdict judged the out-of-box images as they are (what the protocol's clip=none means)
    ep = digits_ep.module
    with ep.unbounded_inputs():
        assert torch.equal(digits_ep.predict(free.adv) == y, free.correct)


def test_the_range_check_is_off_only_inside_the_protocol(digits_ep, images):
    ep = digits_ep.module
    far = images[0][:2] - 0.9  # beyond IMAGE_SLACK: refused everywhere else
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        ep(far)
    with ep.unbounded_inputs():
        assert ep(far).shape == (2, 10)
        with pytest.raises(InputError, match="NaN"):
            ep(torch.full_like(far, float("nan")))
    assert ep.unbounded is False
    with pytest.raises(InputError):
        ep(far)


def test_the_gradient_art_receives_is_the_loss_gradient_at_the_k_step_state(net_factory, batch_factory):
    """float64, a tiny net: ART's loss_gradient == autograd of CE(readout after K updates from zero)."""
    net = net_factory("softmax", "laborieux", seed=1, init_scale=2.0)
    model = Classifier("tiny", EPClassifier(net, "async", steps=5000, tol=1e-13), "ep")
    x, y = batch_factory(n=4, seed=3)
    k = 4
    clf = art_classifier(model, (1, 8, 8), 3, unroll=k, clip="none", device=CPU)
    onehot = np.eye(3)[y.numpy()]
    g = torch.from_numpy(clf.loss_gradient(x.numpy(), onehot))
    assert g.dtype == torch.float64 and float(g.abs().max()) > 1e-6

    # autograd through K updates of the async rule from the null state, written out here
    rule = get_backend("async")
    xg = x.clone().requires_grad_()
    states = net.zeros(xg)
    for _ in range(k):
        states = rule.step(net, xg, states, 0.0, None, net.digital)[0]
    (ref,) = torch.autograd.grad(F.cross_entropy(net.logits(states), y), xg, retain_graph=True)
    assert torch.allclose(g, ref, rtol=1e-10, atol=1e-15)
    # ART's class gradient goes through the same K-step readout
    cg = torch.from_numpy(clf.class_gradient(x.numpy(), label=y.numpy()))[:, 0]
    (cref,) = torch.autograd.grad(net.logits(states).gather(1, y[:, None]).sum(), xg)
    assert torch.allclose(cg, cref, rtol=1e-10, atol=1e-15)

    # without autograd: central differences of the loss of the K-step settle (fixed K, no tolerance)
    def loss(z: torch.Tensor) -> float:
        return float(F.cross_entropy(settle(net, z, "async", steps=k, tol=None).logits, y))

    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-6
    assert float((g * d).sum()) == pytest.approx((loss(x + h * d) - loss(x - h * d)) / (2 * h), rel=1e-5)

    # not the harness's straight-through bptt:K (settled loss, K-step backward): K = 4 has not converged
    spliced = EPClassifier(net, "async", steps=5000, tol=1e-13, grad=f"bptt:{k}")
    xs = x.clone().requires_grad_()
    (st,) = torch.autograd.grad(F.cross_entropy(spliced(xs), y), xs)
    assert not torch.allclose(g, st, rtol=1e-3, atol=0)


def test_predictions_come_from_the_settle(digits_ep, images):
    x, y = images
    k = 2  # far from converged: the K-step readout disagrees with the settle on some image
    clf = art_classifier(digits_ep, tuple(x.shape[1:]), 10, unroll=k, clip="none", device=CPU)
    art_logits = clf.predict(x.numpy(), batch_size=64)
    with torch.no_grad():
        settled = digits_ep.module(x)
    unrolled = settle(digits_ep.module.net, x, "async", steps=k, tol=None).logits
    assert np.allclose(art_logits, settled.numpy(), atol=1e-5)
    assert (art_logits.argmax(1) == settled.argmax(1).numpy()).all()
    assert (unrolled.argmax(1) != settled.argmax(1)).any()
    losses = clf.compute_loss(x.numpy(), np.eye(10, dtype=np.float32)[y.numpy()])  # ART's loss value: settled too
    assert np.allclose(losses, F.cross_entropy(settled, y, reduction="none").numpy(), atol=1e-5)
    # the row's verdict is the settled model's prediction on ART's images against the true labels
    correct, notes, adv = run_art_pgd(
        digits_ep, x[:8], y[:8], 0.4862, norm="L2", steps=3, eps_step=2.5 * 0.4862 / 3, num_random_init=0,
        unroll=k, clip="none", labels="predictions", batch_size=8, seed=0,
    )  # fmt: skip
    with digits_ep.module.unbounded_inputs():
        assert torch.equal(correct, digits_ep.predict(adv) == y[:8])
    assert notes["grad"] == "bptt:2" and notes["unroll"] == 2 and notes["unrolled_forwards"] == 3


def test_labels_predictions_attack_the_models_own_mistakes(student, digits_test):
    x, y = digits_test.batch(slice(None))
    wrong = (student.predict(x) != y).nonzero().flatten()[:3]
    right = (student.predict(x) == y).nonzero().flatten()[:5]
    assert len(wrong) > 0, "the student makes no mistake on the digits test split: nothing to test"
    idx = torch.cat([wrong, right])
    xs, ys = x[idx], y[idx]
    own = run_attack(student, _spec(), xs, ys, 0.4862, seed=0)
    true = run_attack(student, _spec(labels="true"), xs, ys, 0.4862, seed=0)
    n = len(wrong)
    assert torch.equal(own.adv[n:], true.adv[n:])  # where prediction == label, the same attack
    assert ((own.adv[:n] - true.adv[:n]).flatten(1).abs().amax(1) > 0).all()  # elsewhere another one
    assert own.notes["labels"] == "predictions" and true.notes["labels"] == "true"


def test_config_syntax_defaults_and_refusals():
    raw = {
        "run": {"data": "digits", "n": 8, "seeds": [0]},
        "models": [{"name": "a"}],
        "attacks": [
            {"name": "advep-l2", "method": "art-pgd", "norm": "L2", "eps": "advep-l2"},
            {"name": "advep-linf", "method": "art-pgd", "norm": "Linf", "eps": [0.031], "clip": "unit-box"},
            {"name": "ladder", "method": "art-pgd", "norm": "L2", "eps": [0.4862], "random_start": True,
             "restarts": 10, "steps": 200, "labels": "true", "unroll": 120},
        ],
    }  # fmt: skip
    l2, linf, ladder = config_from_dict(raw).attacks
    assert isinstance(l2, ArtPGDSpec) and l2.eps == tuple(advep_eps_grid("L2"))
    assert (l2.steps, l2.step_size, l2.restarts, l2.random_start, l2.num_random_init) == (20, 2.5 / 20, 1, False, 0)
    assert (l2.k, linf.k, l2.clip, l2.labels, linf.clip) == (29, 70, "none", "predictions", "unit-box")
    assert ART_UNROLL == {"L2": 29, "Linf": 70} and l2.white_box and not l2.black_box
    assert (ladder.num_random_init, ladder.step_size, ladder.k, ladder.labels) == (10, 2.5 / 200, 120, "true")
    for bad, match in [
        ({"clip": "box"}, "clip"),
        ({"labels": "model"}, "labels"),
        ({"keep_best": True}, "keep_best"),
        ({"restarts": 10}, "random_start"),
        ({"unroll": 0}, "unroll"),
        ({"eot": 4}, "eot"),
    ]:
        with pytest.raises(ConfigError, match=match):
            config_from_dict({**raw, "attacks": [{**raw["attacks"][0], **bad}]})
    with pytest.raises(ConfigError, match="unknown keys unroll"):  # PGD has no unroll of its own
        config_from_dict({**raw, "attacks": [{"name": "p", "method": "pgd", "norm": "L2", "eps": [1], "unroll": 29}]})
    with pytest.raises(ConfigError, match="ArtPGDSpec"):
        AttackSpec("x", "art-pgd", "L2", (1.0,))


def test_advep_eps_grids_are_the_papers_exact_values():
    l2, linf = advep_eps_grid("L2"), advep_eps_grid("Linf")
    assert len(l2) == len(linf) == 11 and l2 == sorted(l2) and EPS_GRIDS["advep-l2"] == l2
    rounded = [round(e, 4) for e in l2]
    assert {0.4862, 0.1957, 1.2077} <= set(rounded)
    assert rounded == [0.05, 0.0788, 0.1242, 0.1957, 0.3085, 0.4862, 0.7663, 1.0, 1.2077, 1.9035, 3.0]
    assert l2[5] == float(np.logspace(np.log10(0.05), np.log10(3), 10)[5])  # bit for bit numpy's
    assert 0.031 in linf and linf[0] == pytest.approx(1e-4, rel=1e-12) and linf[-1] == pytest.approx(0.1, rel=1e-12)
    assert EPS_GRIDS["advep-linf"] == linf
    with pytest.raises(ConfigError):
        advep_eps_grid("L1")


def test_rows_say_which_protocol_made_them(tmp_path, digits_ep):
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 8, "seeds": [0]},
            "models": [{"name": "EP-CNN"}],
            "attacks": [{"name": "advep", "method": "art-pgd", "norm": "L2", "eps": [0.4862], "unroll": 5}],
            "checks": {"zero_grad_images": 0},
        }
    )
    out = tmp_path / "rows.jsonl"
    run_robustness(cfg, out, progress=False, models={"EP-CNN": digits_ep})
    (row,) = [r for r in read_rows(out) if r["kind"] == "attack"]  # the protocol is one run: no reruns
    assert row["method"] == "art-pgd" and row["white_box"] and row["notes"]["protocol"] == "advep"
    assert row["notes"]["library"].startswith("adversarial-robustness-toolbox ")
    assert row["notes"]["art"]["max_iter"] == 20 and row["notes"]["art"]["num_random_init"] == 0
    assert row["notes"]["clip"] == "none" and row["notes"]["labels"] == "predictions"
    assert row["ep"]["grad"] == "bptt:5" and row["notes"]["unroll"] == 5
