"""Distillation runs: Eq. 8 students match the teacher's states, runs resume, teachers are recorded."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from ephw.checkpoint import BUNDLED_MODEL
from ephw.cli.main import main
from ephw.distill.trainer import DistillSettings, distill
from ephw.errors import CheckpointError, ConfigError
from ephw.feedforward import EPTopologyCNN, ResNet18, load_feedforward, read_feedforward_checkpoint


def tiny(tmp_path, **kw) -> DistillSettings:
    base = DistillSettings(
        epochs=2,
        batch_size=128,
        test_n=128,
        timing_batch=32,
        timing_repeats=1,
        checkpoint_every=3,
        out=str(tmp_path / "run"),
        progress=False,
    )
    return replace(base, **kw)


def test_eq8_student_agrees_with_teacher_and_matches_its_states_better_than_eq9(tmp_path):
    # acceptance 1 on a small budget (the full numbers are in docs/distillation.md)
    runs = {}
    for kind in ("cnn", "cnn-ll"):
        s = tiny(tmp_path / kind, student=kind, epochs=4, batch_size=32, test_n=None, cache_teacher=True)
        runs[kind] = distill(s)
        assert json.loads((tmp_path / kind / "run" / "metrics.json").read_text()) == json.loads(json.dumps(runs[kind]))
    cnn, ll = runs["cnn"], runs["cnn-ll"]
    assert cnn["test_n"] == 540 and cnn["agreement"] >= 0.95
    assert len(cnn["layer_mse"]) == 2
    for mine, theirs in zip(cnn["layer_mse"], ll["layer_mse"]):
        assert mine < 0.5 * theirs
    assert cnn["timing"]["speedup"] > 1 and cnn["timing"]["teacher_steps_mean"] > 5
    model, meta = load_feedforward(tmp_path / "cnn" / "run" / "model.pt")
    assert isinstance(model, EPTopologyCNN) and meta["loss"] == "eq8" and meta["student"] == "cnn"
    assert meta["teacher"]["path"] == str(BUNDLED_MODEL) and meta["teacher"]["meta"]["data"] == "digits"
    assert meta["teacher"]["backend"] == "async" and meta["metrics"]["agreement"] == cnn["agreement"]


def dying_sgd(monkeypatch, at: int) -> None:
    real = torch.optim.SGD.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise SystemExit("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
    straight = tiny(tmp_path / "a", max_batches=5)  # teacher settles each batch as it comes
    distill(straight)
    killed = tiny(tmp_path / "b", max_batches=5)
    dying_sgd(monkeypatch, 9)  # epoch 2, batch 4: last checkpoint after batch 3 of epoch 2
    with pytest.raises(SystemExit):
        distill(killed)
    monkeypatch.undo()
    state = read_feedforward_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt").training
    assert (state["epoch"], state["batch"]) == (1, 3)
    with pytest.raises(ConfigError, match="--resume"):
        distill(killed)
    with pytest.raises(ConfigError, match="layer_weights"):
        distill(replace(killed, resume=True, layer_weights=(3.0,)))
    distill(replace(killed, resume=True))
    a = read_feedforward_checkpoint(tmp_path / "a" / "run" / "model.pt").state_dict
    b = read_feedforward_checkpoint(tmp_path / "b" / "run" / "model.pt").state_dict
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_crossbar_teacher_student_records_its_preset(tmp_path):
    s = tiny(
        tmp_path,
        epochs=1,
        max_batches=2,
        teacher_backend="crossbar",
        teacher_backend_options={"preset": "pcm", "overrides": ["chip_seed=5"]},
        teacher_tol=1e-4,
        teacher_steps=300,
    )
    metrics = distill(s)
    assert metrics["teacher"]["backend"] == "crossbar"
    meta = read_feedforward_checkpoint(tmp_path / "run" / "model.pt").meta
    teacher = meta["teacher"]
    assert teacher["backend"] == "crossbar" and teacher["backend_options"]["preset"] == "pcm"
    assert teacher["backend_params"]["params"]["chip_seed"] == 5
    assert teacher["backend_params"]["params"]["programming_noise"]["kind"] == "pcm"
    assert meta["settings"]["teacher_backend_options"]["preset"] == "pcm"


def test_resnet18_student_learns_the_output_only(tmp_path):
    metrics = distill(tiny(tmp_path, student="resnet18", width=4, epochs=1, max_batches=3, lrs=(0.05,)))
    assert metrics["loss"] == "eq9" and metrics["layer_mse"] is None
    model, meta = load_feedforward(tmp_path / "run" / "model.pt")
    assert isinstance(model, ResNet18) and model.spec.width == 4 and meta["settings"]["width"] == 4


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="cache-teacher"):
        distill(tiny(tmp_path, cache_teacher=True, augment=True))
    with pytest.raises(ConfigError, match="unknown student"):
        distill(tiny(tmp_path, student="mlp"))
    with pytest.raises(ConfigError, match="1 or 2 values"):
        distill(tiny(tmp_path, layer_weights=(1.0, 2.0, 3.0)))
    with pytest.raises(ConfigError, match="EP-topology"):
        distill(tiny(tmp_path, student="resnet18", init="teacher"))
    with pytest.raises(CheckpointError, match="not found"):
        distill(tiny(tmp_path, teacher=str(tmp_path / "none.pt")))


def test_cli_distill_json_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["distill", "--student", "cnn-ll", "--epochs", "1", "--max-batches", "2", "--batch-size", "64"]
        + ["--test-n", "64", "--timing-batch", "16", "--no-progress", "--out", str(out), "--json"]
    )
    row = json.loads(capsys.readouterr().out)
    assert code == 0 and row["out"] == str(out) and row["student"] == "cnn-ll" and row["test_n"] == 64
    assert {"test_accuracy", "agreement", "layer_mse", "timing", "teacher"} <= set(row)
    code = main(["distill", "--teacher-backend", "nope", "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("ephw: error: unknown backend 'nope'")
