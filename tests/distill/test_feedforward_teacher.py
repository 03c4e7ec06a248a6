"""The BP-CNN control teacher: the same targets as an EP teacher's, from a forward pass; students distil from it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ephw.bench.students import bench_students
from ephw.cli.main import main
from ephw.data import load_dataset
from ephw.distill.feedforward_teacher import FEEDFORWARD_BACKEND, FeedForwardTeacher, is_feedforward_checkpoint
from ephw.distill.teacher import Teacher
from ephw.distill.trainer import DistillSettings, distill, student_run_folder
from ephw.errors import ConfigError
from ephw.feedforward import CNNSpec, EPTopologyCNN, ResNet18, ResNetSpec, load_feedforward, save_feedforward
from ephw.model import named_config
from ephw.training.train_bp import BPTrainSettings, build_bp_model


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("ephw-cache")
    monkeypatch.setenv("EPHW_CACHE", str(cache))
    return cache


def bp_cnn(activation: str = "laborieux", seed: int = 0) -> EPTopologyCNN:
    """An untrained digits BP-CNN, exactly as ``ephw train bp`` builds it."""
    return build_bp_model(BPTrainSettings(data="digits", activation=activation, seed=seed), 10).eval()


def saved_bp_cnn(folder: Path, activation: str = "laborieux") -> Path:
    """A digits BP-CNN model file with the meta ``ephw train bp`` writes (trainer, data)."""
    path = folder / f"bp-{activation}" / "model.pt"
    save_feedforward(path, bp_cnn(activation), {"data": "digits", "trainer": "bp"})
    return path


def test_targets_are_the_bp_cnns_states_and_softmax() -> None:
    net = bp_cnn()
    x, _ = load_dataset("digits", "test").batch(slice(0, 20))
    t = FeedForwardTeacher(net).targets(x)
    states = net.states(x)
    assert t.converged is None and bool((t.steps == 0).all())
    assert len(t.hidden) == FeedForwardTeacher(net).n_hidden == len(net.spec.config.state_shapes()) == 2
    for got, want in zip(t.hidden, states[:-1]):
        assert torch.equal(got, want.detach()) and float(got.min()) >= 0.0 and float(got.max()) <= 1.0
    assert torch.allclose(t.output, torch.softmax(states[-1], 1)) and torch.equal(t.predictions, states[-1].argmax(1))
    # the EP teacher's layout: the same shapes its fixed point has
    assert [tuple(h.shape[1:]) for h in t.hidden] == net.spec.config.state_shapes()


def test_an_mse_network_teaches_its_normalised_output_state_as_the_ep_teacher_does() -> None:
    torch.manual_seed(0)
    net = EPTopologyCNN(CNNSpec(named_config("digits", output="mse"))).eval()
    x, _ = load_dataset("digits", "test").batch(slice(0, 8))
    t = FeedForwardTeacher(net).targets(x)
    states = net.states(x)  # hidden..., output act(u), u
    assert len(t.hidden) == len(states) - 2
    y = states[-2].detach()
    expected = torch.where(y.sum(1, keepdim=True) > 0, y / y.sum(1, keepdim=True).clamp_min(1e-30), 0.1)
    assert torch.allclose(t.output, expected)


def test_a_relu_bn_network_teaches_eq9_only_and_a_resnet_not_at_all() -> None:
    relu = bp_cnn("relu-bn")
    with pytest.raises(ConfigError, match="relu-bn teacher's activations are not EP states") as err:
        FeedForwardTeacher(relu)
    assert "\n" not in str(err.value)
    teacher = FeedForwardTeacher(relu, eq8=False)
    x, _ = load_dataset("digits", "test").batch(slice(0, 8))
    t = teacher.targets(x)
    assert teacher.n_hidden == 0 and t.hidden == []
    assert torch.allclose(t.output, torch.softmax(relu(x), 1))
    resnet = ResNet18(ResNetSpec((1, 8, 8), 10, 4))
    with pytest.raises(ConfigError, match="must be an EP-topology CNN"):
        FeedForwardTeacher(resnet, eq8=False)


def test_dataset_targets_are_cached_per_weights_and_images(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("digits", "test").subset(100)
    teacher = FeedForwardTeacher(bp_cnn())
    first = teacher.dataset_targets(data, batch_size=32, reuse=True)
    monkeypatch.setattr(teacher, "targets", lambda x: pytest.fail("a cached entry is computed again"))
    again = teacher.dataset_targets(data, batch_size=32, reuse=True)
    assert all(torch.equal(a, b) for a, b in zip(first.hidden, again.hidden))
    assert torch.equal(first.output, again.output) and len(first.predictions) == 100
    other = FeedForwardTeacher(bp_cnn(seed=1))
    assert other.fingerprint(data) != teacher.fingerprint(data)
    assert teacher.fingerprint(data) != teacher.fingerprint(data.subset(50))
    json.dumps(teacher.describe())
    assert teacher.describe()["backend"] == FEEDFORWARD_BACKEND and teacher.kind == "feedforward"
    assert Teacher.kind == "ep"


def tiny(tmp_path: Path, **kw) -> DistillSettings:
    base = DistillSettings(
        epochs=1,
        batch_size=64,
        max_batches=3,
        test_n=64,
        timing_batch=16,
        timing_repeats=1,
        out=str(tmp_path / "run"),
        progress=False,
    )
    return replace(base, **kw)


def test_students_distil_from_a_bp_cnn_end_to_end(tmp_path: Path) -> None:
    teacher = saved_bp_cnn(tmp_path)
    assert is_feedforward_checkpoint(teacher)
    m = distill(tiny(tmp_path / "eq8", teacher=str(teacher), student="cnn", cache_teacher=True))
    assert m["loss"] == "eq8" and len(m["layer_mse"]) == 2 and m["test_n"] == 64
    assert m["timing"] is None and m["teacher_steps_mean"] is None
    assert m["teacher"]["kind"] == "feedforward" and m["teacher"]["backend"] == FEEDFORWARD_BACKEND
    student, meta = load_feedforward(tmp_path / "eq8" / "run" / "model.pt")
    assert isinstance(student, EPTopologyCNN) and student.spec.config == bp_cnn().spec.config
    assert meta["teacher"]["kind"] == "feedforward" and meta["teacher"]["meta"]["trainer"] == "bp"
    assert meta["settings"]["teacher_backend"] == FEEDFORWARD_BACKEND and meta["settings"]["teacher"] == str(teacher)
    ll = distill(tiny(tmp_path / "ll", teacher=str(teacher), student="cnn-ll"))
    assert ll["loss"] == "eq9" and ll["agreement"] is not None
    # the one-run timing: a forward-pass teacher has no settle to time the student against
    timed = bench_students(tmp_path / "eq8", batch=8, repeats=1)
    row = timed["students"]["run"]
    assert row["speedup"] is None and row["teacher_backend"] == FEEDFORWARD_BACKEND and len(row["model_sha256"]) == 64
    assert student_run_folder(DistillSettings(teacher=str(teacher), student="cnn")) == "runs/distill-cnn-feedforward"


def test_a_bp_cnn_teacher_refuses_what_does_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = saved_bp_cnn(tmp_path)
    with pytest.raises(ConfigError, match="--teacher-backend crossbar does not apply"):
        distill(tiny(tmp_path, teacher=str(teacher), teacher_backend="crossbar"))
    relu = saved_bp_cnn(tmp_path, "relu-bn")
    with pytest.raises(ConfigError, match="not EP states"):
        distill(tiny(tmp_path / "relu", teacher=str(relu), student="cnn"))
    m = distill(tiny(tmp_path / "relu-ll", teacher=str(relu), student="cnn-ll"))
    assert m["layer_mse"] is None and m["teacher"]["activation"] == "relu-bn"
    with pytest.raises(ConfigError, match="--init teacher needs a hard-sigmoid teacher"):
        distill(tiny(tmp_path / "relu-init", teacher=str(relu), student="cnn-ll", init="teacher"))
    out = tmp_path / "cli"
    args = ["distill", "--teacher", str(teacher), "--student", "cnn", "--epochs", "1", "--max-batches", "2"]
    args += ["--batch-size", "64", "--test-n", "64", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert "no settle to compare with" in capsys.readouterr().out
    assert main([*args[:-1], str(tmp_path / "cli2"), "--teacher-backend", "euler"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ephw: error: --teacher-backend euler does not apply")
