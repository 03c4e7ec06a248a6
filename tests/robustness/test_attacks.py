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


def test_keep_best_never_loses_an_adversarial_and_returns_real_ones(cnn, images):
    """Same seed, same iterates: keeping the first misclassified iterate can only break more images,
    and every image it counts as broken is misclassified at a point inside the budget."""
    x, y = images
    spec = AttackSpec("pgd", "pgd", "L2", (0.8,), steps=10, rel_stepsize=1.0, restarts=1)  # steps of eps overshoot
    last = run_attack(cnn, AttackSpec(**{**spec.__dict__, "keep_best": False}), x, y, 0.8, seed=3)
    best = run_attack(cnn, spec, x, y, 0.8, seed=3)
    assert not (best.correct & ~last.correct).any()  # nothing the last iterate broke survives
    broken = ~best.correct
    assert (cnn.predict(best.adv[broken]) != y[broken]).all()
    assert float((best.adv - x).flatten(1).norm(dim=1).max()) <= 0.8 * (1 + 1e-4)
    gained = int((last.correct & ~best.correct).sum())
    assert gained > 0 and best.notes["earlier_iterate"] == gained


class _CountingImages(torch.nn.Module):
    """``module`` unchanged, counting the images it is asked to classify."""

    def __init__(self, module):
        super().__init__()
        self.module, self.images = module, 0

    def forward(self, x):
        self.images += x.shape[0]
        return self.module(x)


@pytest.mark.parametrize("norm,eps", [("L2", 0.8), ("Linf", 0.08)])
def test_deterministic_pgd_stops_at_first_break_with_the_same_verdicts(tiny_cnn, images, norm, eps):
    """Dropping broken (and clean-misclassified) images from the batch changes the work, not the
    per-image verdict; what a broken image returns is a misclassified point inside the budget."""
    x, y = images
    spec = AttackSpec("pgd", "pgd", norm, (eps,), steps=20, restarts=3)
    full, fast = Classifier("full", _CountingImages(tiny_cnn)), Classifier("fast", _CountingImages(tiny_cnn))
    a = run_attack(full, spec, x, y, eps, seed=1)
    b = run_attack(fast, spec, x, y, eps, seed=1, deterministic=True)
    assert torch.equal(a.correct, b.correct) and 0 < int(b.correct.sum()) < len(y)
    # a clean-misclassified image can survive the full run's random start; the ball holds x, so never here
    assert all(f <= s for f, s in zip(b.notes["survivors"], a.notes["survivors"])) and b.notes["stop_at_first_break"]
    assert fast.module.images < 0.9 * full.module.images
    broken = ~b.correct
    assert (tiny_cnn(b.adv[broken]).argmax(1) != y[broken]).all()
    d = (b.adv - x).flatten(1)
    assert float((d.norm(dim=1) if norm == "L2" else d.abs().amax(1)).max()) <= eps * (1 + 1e-4)


def test_witness_keeps_the_first_misclassified_query_and_rechecks_it():
    """A scripted 'attack' queries a correct point, an adversarial one, then returns a correct one."""
    from ephw.robustness.attacks import IterateWitness, _pgd_restart

    class Sign(torch.nn.Module):  # class 1 iff the pixel is above 0.5
        def forward(self, x):
            v = x.flatten(1).mean(1, keepdim=True) - 0.5
            return torch.cat([-v, v], 1) * 10

    def scripted(fmodel, xb, yb, epsilons):
        for value in (0.4, 0.7, 0.45):  # only 0.7 is misclassified (label 0)
            fmodel(torch.full_like(xb, value))
        last = torch.full_like(xb, 0.45)
        return None, last, None

    clf = Classifier("sign", Sign())
    x, y = torch.full((3, 1, 2, 2), 0.3), torch.zeros(3, dtype=torch.long)
    alive, adv = torch.ones(3, dtype=torch.bool), x.clone()
    witness = IterateWitness(clf.module)
    n = _pgd_restart(clf, witness, scripted, x, y, 1.0, torch.arange(3), 0, 2, None, alive, adv, witness)
    assert n == 3 and not alive.any() and torch.allclose(adv, torch.full_like(x, 0.7))
    alive, adv = torch.ones(3, dtype=torch.bool), x.clone()
    assert _pgd_restart(clf, witness, scripted, x, y, 1.0, torch.arange(3), 0, 2, None, alive, adv, None) == 0
    assert alive.all() and torch.allclose(adv, torch.full_like(x, 0.45))  # without it: foolbox's last iterate
