"""Attacks on a tiny digits CNN and on the bundled EP model: eps = 0 is clean, attacks bite, seeds repeat."""

from __future__ import annotations

import pytest
import torch

from ephw.robustness.attacks import AttackSpec, run_attack
from ephw.robustness.models import Classifier, ModelSpec, load_classifier

PGD_L2 = AttackSpec("pgd-l2", "pgd", "L2", (1.5,), steps=10, restarts=1)
PGD_LINF = AttackSpec("pgd-linf", "pgd", "Linf", (0.2,), steps=10, restarts=1)
APGD = AttackSpec("aa", "autoattack", "Linf", (0.2,), version="custom", attacks=("apgd-ce",))
SQUARE = AttackSpec("square", "square", "Linf", (0.2,), n_queries=300)


@pytest.fixture(scope="module")
def cnn(tiny_cnn):
    return Classifier("tiny", tiny_cnn)


@pytest.fixture(scope="module")
def images(digits_test):
    return digits_test.batch(slice(0, 64))


def test_tiny_cnn_is_accurate(cnn, images):
    x, y = images
    assert (cnn.predict(x) == y).float().mean() >= 0.9


@pytest.mark.parametrize("spec", [PGD_L2, PGD_LINF, APGD, SQUARE], ids=lambda s: s.name)
def test_eps_zero_is_clean_accuracy(cnn, images, spec):
    x, y = images
    out = run_attack(cnn, spec, x, y, 0.0, seed=0)
    assert torch.equal(out.correct, cnn.predict(x) == y)


@pytest.mark.parametrize("spec", [PGD_L2, PGD_LINF, APGD, SQUARE], ids=lambda s: s.name)
def test_attack_lowers_accuracy_at_moderate_eps(cnn, images, spec):
    x, y = images
    clean = float((cnn.predict(x) == y).float().mean())
    out = run_attack(cnn, spec, x, y, spec.eps[0], seed=0)
    assert float(out.correct.float().mean()) < clean - 0.3
    if spec.method == "pgd":  # the returned images respect the budget
        d = (out.adv - x).flatten(1)
        norm = d.norm(dim=1) if spec.norm == "L2" else d.abs().amax(1)
        assert float(norm.max()) <= spec.eps[0] * (1 + 1e-4)
        assert out.adv.min() >= 0 and out.adv.max() <= 1


def test_same_seed_same_result_and_global_rng_untouched(cnn, images):
    x, y = images
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = run_attack(cnn, SQUARE, x, y, 0.1, seed=5)
    after = torch.rand(1)
    b = run_attack(cnn, SQUARE, x, y, 0.1, seed=5)
    assert torch.equal(a.correct, b.correct) and torch.equal(before, after)


@pytest.mark.parametrize("grad", ["bptt:29", "implicit"])
def test_pgd_on_the_bundled_ep_model(digits_test, grad):
    ep = load_classifier(ModelSpec("ep", tol=1e-4, grad=grad))
    x, y = digits_test.batch(slice(0, 24))
    clean = float((ep.predict(x) == y).float().mean())
    out = run_attack(ep, AttackSpec("pgd", "pgd", "L2", (1.5,), steps=5, restarts=1), x, y, 1.5, seed=0)
    assert clean >= 0.9 and float(out.correct.float().mean()) < clean - 0.3
    assert ep.module.settle_stats.unconverged == 0
