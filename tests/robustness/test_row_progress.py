"""Mid-row PGD progress: a row killed after any batch resumes to the uninterrupted result, bit for bit."""

from __future__ import annotations

import pytest
import torch

from ephw.robustness import progress
from ephw.robustness.attacks import AttackSpec, run_attack
from ephw.robustness.config import config_from_dict
from ephw.robustness.models import Classifier, EPClassifier
from ephw.robustness.runner import progress_dir, read_rows, run_robustness

SPEC = AttackSpec("pgd-l2", "pgd", "L2", (0.7,), steps=8, restarts=3, batch_size=16)
EPS = 0.7  # breaks most images, restarts 1-2 break more


class Killed(Exception):
    pass


def _kill_after(monkeypatch, saves: int) -> list[int]:
    """Let ``saves`` progress saves land, then kill the run (as a session end would)."""
    real, count = progress.save, [0]

    def save(path, state):
        real(path, state)
        count[0] += 1
        if count[0] == saves:
            raise Killed

    monkeypatch.setattr(progress, "save", save)
    return count


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("saves", [1, 4, 5, 6])
def test_a_killed_row_resumes_to_the_uninterrupted_result(cnn, images, tmp_path, monkeypatch, deterministic, saves):
    x, y = images
    whole = run_attack(cnn, SPEC, x, y, EPS, seed=3, deterministic=deterministic)
    assert 0 < int(whole.correct.sum()) < len(y)  # the attack breaks some images, not all
    file = tmp_path / "row.pt"
    _kill_after(monkeypatch, saves)
    with pytest.raises(Killed):
        run_attack(cnn, SPEC, x, y, EPS, seed=3, deterministic=deterministic, progress=file)
    monkeypatch.undo()
    assert file.is_file()
    again = run_attack(cnn, SPEC, x, y, EPS, seed=3, deterministic=deterministic, progress=file)
    assert torch.equal(again.correct, whole.correct)
    assert again.notes["survivors"] == whole.notes["survivors"]
    assert again.notes["resumed"]["restart"] * 10 + again.notes["resumed"]["batch"] > 0
    if deterministic:
        assert again.adv is None  # the earlier images' first-break iterates were not kept
    else:
        assert torch.equal(again.adv, whole.adv)


def test_a_resumed_ep_row_reports_the_settles_of_the_whole_row(net_factory, batch_factory, tmp_path, monkeypatch):
    net = net_factory("softmax", "laborieux", seed=1, init_scale=2.0)
    x, _ = batch_factory(12)
    spec = AttackSpec("p", "pgd", "L2", (0.5,), steps=2, restarts=3, batch_size=4)

    def attack(progress_file=None):
        ep = EPClassifier(net, "async", steps=200, tol=1e-6, grad="bptt:2,implicit")
        clf = Classifier("ep", ep, "ep")
        y = clf.predict(x)
        ep.reset_stats()  # as the runner does before each row
        return ep, run_attack(clf, spec, x, y, 0.5, seed=0, progress=progress_file)

    ep, whole = attack()
    assert ep.settle_stats.calls > 0 and ep.adjoint_stats.converged
    file = tmp_path / "row.pt"
    _kill_after(monkeypatch, 4)
    with pytest.raises(Killed):
        attack(file)
    monkeypatch.undo()
    again_ep, again = attack(file)
    assert again.notes["resumed"]["restart"] * 10 + again.notes["resumed"]["batch"] > 0
    assert torch.equal(again.correct, whole.correct)
    assert again_ep.settle_stats == ep.settle_stats
    assert again_ep.adjoint_stats == ep.adjoint_stats


def test_progress_of_another_row_or_a_broken_file_starts_over(cnn, images, tmp_path, monkeypatch):
    x, y = images
    file = tmp_path / "row.pt"
    _kill_after(monkeypatch, 2)
    with pytest.raises(Killed):
        run_attack(cnn, SPEC, x, y, EPS, seed=3, progress=file)
    monkeypatch.undo()
    whole = run_attack(cnn, SPEC, x, y, EPS, seed=4)
    with pytest.warns(UserWarning, match="another row"):  # seed 4 is not the row that was saved
        other = run_attack(cnn, SPEC, x, y, EPS, seed=4, progress=file)
    assert "resumed" not in other.notes and torch.equal(other.correct, whole.correct)
    file.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        broken = run_attack(cnn, SPEC, x, y, EPS, seed=4, progress=file)
    assert torch.equal(broken.correct, whole.correct)


def test_the_runner_resumes_a_killed_row_and_removes_its_progress(tiny_cnn, tmp_path, monkeypatch):
    cfg = config_from_dict(
        {
            "run": {"data": "digits", "n": 48, "seeds": [0]},
            "models": [{"name": "cnn"}],
            "attacks": [
                {
                    **{k: getattr(SPEC, k) for k in ("name", "method", "norm", "steps", "restarts")},
                    "eps": [EPS],
                    "batch_size": 16,
                }
            ],  # fmt: skip
            "checks": {"zero_grad_images": 0, "double_steps": False, "double_restarts": False},
        }
    )
    models = {"cnn": Classifier("cnn", tiny_cnn)}
    whole = read_rows(run_robustness(cfg, tmp_path / "whole.jsonl", progress=False, models=models).results)
    out = tmp_path / "killed.jsonl"
    _kill_after(monkeypatch, 2)
    with pytest.raises(Killed):
        run_robustness(cfg, out, progress=False, models=models)
    monkeypatch.undo()
    assert len(list(progress_dir(out).glob("*.pt"))) == 1
    resumed = read_rows(run_robustness(cfg, out, progress=False, models=models).results)
    assert not list(progress_dir(out).glob("*.pt"))
    pick = [(r["kind"], r["attack"], r["correct"], r["survival"]) for r in whole]
    assert [(r["kind"], r["attack"], r["correct"], r["survival"]) for r in resumed] == pick
    row = next(r for r in resumed if r["kind"] == "attack")
    assert row["notes"]["resumed"]["batch"] >= 1 and row["seconds"] >= row["notes"]["resumed"]["seconds_before"]
