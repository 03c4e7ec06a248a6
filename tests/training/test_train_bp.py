"""BP-CNN and Adv-CNN baselines: learning, PGD-l2 geometry, resumable runs, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ephw.cli.main import main
from ephw.errors import ConfigError
from ephw.feedforward import EPTopologyCNN, load_feedforward, read_feedforward_checkpoint
from ephw.training.run import seeded
from ephw.training.train_adv import AdvTrainSettings, pgd_l2, random_l2_ball, train_adv
from ephw.training.train_bp import BPTrainSettings, build_bp_model, train_bp


def tiny(tmp_path, cls=BPTrainSettings, **kw):
    base = cls(epochs=2, batch_size=64, checkpoint_every=3, max_batches=6, out=str(tmp_path / "run"), progress=False)
    return replace(base, **kw)


@pytest.mark.parametrize("activation, epochs, floor", [("laborieux", 3, 0.8), ("relu-bn", 1, 0.9)])
def test_bp_cnn_learns_digits(tmp_path, activation, epochs, floor):
    s = tiny(tmp_path, activation=activation, epochs=epochs, batch_size=32, max_batches=None)
    metrics = train_bp(s)
    assert metrics["test_accuracy"] > floor and metrics["test_n"] == 540  # chance is 0.1
    model, meta = load_feedforward(tmp_path / "run" / "model.pt")
    assert isinstance(model, EPTopologyCNN) and meta["trainer"] == "bp"
    assert model.spec.activation == ("relu-bn" if activation == "relu-bn" else "hard-sigmoid")
    assert model.spec.config.name == "digits"  # the EP-CNN topology of `ephw train ep --config digits`
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]


def test_pgd_l2_stays_in_the_ball_and_box_and_raises_the_loss():
    s = BPTrainSettings(activation="relu-bn")
    model = build_bp_model(s, 10).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    adv = pgd_l2(model, x, y, eps=0.5, steps=10, step_size=0.125, generator=seeded(0, 1))
    norms = (adv - x).flatten(1).norm(dim=1)
    assert float(norms.max()) <= 0.5 + 1e-5 and float(norms.min()) > 0.3
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert float(F.cross_entropy(model(adv), y)) > float(F.cross_entropy(model(x), y)) + 0.1
    again = pgd_l2(model, x, y, eps=0.5, steps=10, step_size=0.125, generator=seeded(0, 1))
    assert torch.equal(adv, again)  # seeded random start


def test_random_start_is_uniform_in_the_ball():
    pts = random_l2_ball(torch.Size((4000, 2)), 2.0, torch.Generator().manual_seed(0))
    r = pts.norm(dim=1)
    assert float(r.max()) <= 2.0
    assert abs(float((r < 2.0 * 0.5**0.5).float().mean()) - 0.5) < 0.03  # half the area inside r = eps/sqrt(2)


def test_adv_training_runs_and_records_pgd(tmp_path):
    metrics = train_adv(tiny(tmp_path, AdvTrainSettings, epochs=1, pgd_steps=3, eps=0.3))
    assert metrics["trainer"] == "adv" and 0 <= metrics["test_accuracy"] <= 1
    meta = read_feedforward_checkpoint(tmp_path / "run" / "model.pt").meta
    assert meta["pgd"] == {"eps": 0.3, "steps": 3, "step_size": pytest.approx(0.25)}
    with pytest.raises(ConfigError, match="eps"):
        train_adv(tiny(tmp_path / "bad", AdvTrainSettings, eps=0.0))


def test_bp_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
    train_bp(tiny(tmp_path / "a", activation="relu-bn"))
    killed = tiny(tmp_path / "b", activation="relu-bn")
    real = torch.optim.SGD.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:  # epoch 2, batch 5: last checkpoint after batch 3 of epoch 2
            raise SystemExit("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    with pytest.raises(SystemExit):
        train_bp(killed)
    monkeypatch.undo()
    state = read_feedforward_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt").training
    assert (state["epoch"], state["batch"]) == (1, 3)
    train_bp(replace(killed, resume=True))
    a = read_feedforward_checkpoint(tmp_path / "a" / "run" / "model.pt").state_dict
    b = read_feedforward_checkpoint(tmp_path / "b" / "run" / "model.pt").state_dict
    for k in a:  # BatchNorm running statistics included
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_cli_train_bp_and_adv(tmp_path, capsys):
    common = ["--epochs", "1", "--max-batches", "2", "--no-progress", "--test-n", "64"]
    assert main(["train", "bp", *common, "--activation", "relu-bn", "--out", str(tmp_path / "bp")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["trainer"] == "bp" and row["out"] == str(tmp_path / "bp") and row["test_n"] == 64
    assert main(["train", "adv", *common, "--pgd-steps", "2", "--eps", "0.25", "--out", str(tmp_path / "adv")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["trainer"] == "adv"
    assert main(["train", "bp", *common, "--lrs", "0.1,0.2", "--out", str(tmp_path / "bad")]) == 2
    assert "lrs" in capsys.readouterr().err
