"""The model loader dispatches on the checkpoint format; configs load and refuse bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ephw.checkpoint import BUNDLED_MODEL
from ephw.errors import CheckpointError, ConfigError
from ephw.robustness.attacks import DEFAULT_RESTARTS, DEFAULT_STEPS
from ephw.robustness.config import EPS_GRIDS, config_from_dict, load_config
from ephw.robustness.models import DEFAULT_GRAD, EPClassifier, ModelSpec, load_classifier

REPO = Path(__file__).resolve().parents[2]


def test_ep_checkpoint_becomes_an_ep_classifier(digits_test):
    clf = load_classifier(ModelSpec("ep", backend="euler", steps=300, tol=1e-4, grad="implicit"))
    assert clf.kind == "ep" and isinstance(clf.module, EPClassifier) and not clf.module.training
    assert clf.data == "digits" and clf.meta["grad"] == "implicit" and clf.module.backend.name == "euler"
    x, y = digits_test.batch(slice(0, 64))
    assert (clf.predict(x) == y).float().mean() >= 0.9


def test_feedforward_checkpoint_is_loaded_through_ephw_feedforward(tmp_path, digits_test):
    feedforward = pytest.importorskip("ephw.feedforward")
    from ephw.model import named_config

    net = feedforward.EPTopologyCNN(feedforward.CNNSpec(named_config("digits")))
    path = feedforward.save_feedforward(tmp_path / "ff.pt", net, {"data": "digits"})
    clf = load_classifier(ModelSpec("ff", path=str(path)))
    assert clf.kind == "feedforward" and clf.data == "digits" and not clf.module.training
    x, _ = digits_test.batch(slice(0, 4))
    assert torch.allclose(clf(x), net.eval()(x))


def test_foreign_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(ModelSpec("x", path=str(tmp_path / "none.pt")))
    torch.save({"format": "someone.else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_classifier(ModelSpec("x", path=str(tmp_path / "other.pt")))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        load_classifier(ModelSpec("x", path=str(tmp_path / "junk.pt")))


def test_example_config_and_grids():
    cfg = load_config(REPO / "examples" / "robustness_digits.toml")
    assert [m.name for m in cfg.models] == ["EP-CNN", "BP-CNN", "Distilled BP-CNN"]
    assert cfg.models[0].file == BUNDLED_MODEL and cfg.n == 200 and cfg.seeds == (0, 1, 2)
    pgd = next(a for a in cfg.attacks if a.name == "PGD-l2")
    assert (pgd.restarts, pgd.steps) == (DEFAULT_RESTARTS, DEFAULT_STEPS) and pgd.steps * pgd.step_size >= 2
    assert cfg.models[0].grad == DEFAULT_GRAD and cfg.checks.warm_start_from
    assert any(a.cascade for a in cfg.attacks)
    cifar = load_config(REPO / "examples" / "robustness_cifar10.toml")
    assert cifar.data == "cifar10" and [m.path for m in cifar.models][0].endswith("model.pt")
    assert {a.norm for a in cifar.attacks} == {"L2", "Linf"} and cifar.checks.grad_sweep
    budget = load_config(REPO / "examples" / "pgd_budget_digits.toml")  # docs/robustness.md, "Budgets"
    steps = {a.name: a.steps * a.step_size for a in budget.attacks}
    assert steps == {"PGD-l2": pytest.approx(2.5), "PGD-l2 200": pytest.approx(5.0)}
    assert budget.checks.double_steps and budget.checks.double_restarts and budget.checks.seeds == (0, 1, 2)
    l2, linf = EPS_GRIDS["lanl-l2"], EPS_GRIDS["lanl-linf"]
    assert len(l2) == 12 and l2[0] == 0.005 and l2[-1] == 3.0 and 1.0 in l2 and 0.05 in l2
    assert len(linf) == 11 and linf[0] == 0.0001 and linf[-1] == 0.1 and round(8 / 255, 6) in linf


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"models": []}, "at least one"),
        ({"models": [{"name": "a"}, {"name": "a"}]}, "duplicate model"),
        ({"models": [{"name": "a", "colour": 1}]}, "unknown keys colour"),
        ({"models": [{"name": "a", "grad": "newton"}]}, "invalid --grad"),
        ({"models": [{"name": "a"}], "attacks": [{"name": "p", "method": "pgd", "norm": "L2"}]}, "eps is required"),
        ({"models": [{"name": "a"}], "attacks": [{"name": "p", "method": "fgsm", "norm": "L2", "eps": [1]}]}, "method"),
        ({"models": [{"name": "a"}], "attacks": [{"name": "p", "method": "pgd", "norm": "L2", "eps": "x"}]}, "grid"),
        ({"models": [{"name": "a"}], "checks": {"transfer_from": "b"}}, "transfer_from"),
        ({"models": [{"name": "a"}], "corruptions": {"names": ["rain"]}}, "unknown corruptions"),
        ({"models": [{"name": "a"}], "plots": {}}, "unknown sections"),
    ],
)
def test_bad_configs(raw, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw)
