"""EP training runs: learning happens, checkpoints resume exactly, bad resumes are refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import ephw.training.train_ep as train_module
from ephw.checkpoint import load_checkpoint
from ephw.loading import load_model
from ephw.errors import CheckpointError, ConfigError
from ephw.training.train_ep import EPTrainSettings, train_ep


def tiny(tmp_path, **kw) -> EPTrainSettings:
    base = EPTrainSettings(
        data="digits",
        config="digits",
        epochs=2,
        batch_size=128,
        lrs=(0.05,),
        free_steps=8,
        nudge_steps=3,
        backend="async",
        eval_steps=50,
        checkpoint_every=3,
        out=str(tmp_path / "run"),
        progress=False,
    )
    return replace(base, **kw)


def weights(path):
    return load_checkpoint(path).state_dict


def test_training_learns_and_writes_metrics(tmp_path):
    s = tiny(tmp_path, epochs=2, batch_size=32, free_steps=15, nudge_steps=5, checkpoint_every=50)
    metrics = train_ep(s)
    assert metrics["epoch"] == 2 and metrics["test_accuracy"] > 0.6  # chance is 0.1
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    train_rows = [r for r in rows if r["event"] == "train"]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    net = load_model(tmp_path / "run" / "model.pt")
    assert load_checkpoint(tmp_path / "run" / "model.pt").meta["data"] == "digits"
    assert net.config.name == "digits"


@pytest.mark.parametrize(
    "recipe",
    [{}, {"free_init": "image"}, {"free_init": "batch", "nudging": "positive"}],
    ids=["zero", "image", "batch-positive"],
)
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch, recipe):
    """Also with carried free states: they are saved with each checkpoint and a resume continues from them."""
    straight = tiny(tmp_path / "a", **recipe)
    train_ep(straight)

    killed = tiny(tmp_path / "b", **recipe)
    real_step = train_module.ep_step
    calls = {"n": 0}

    def dying_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 15:  # epoch 2, batch 5: last checkpoint was after batch 3 of epoch 2
            raise SystemExit("killed")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "ep_step", dying_step)
    with pytest.raises(SystemExit):
        train_ep(killed)
    monkeypatch.setattr(train_module, "ep_step", real_step)
    state = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt").training
    assert (state["epoch"], state["batch"]) == (1, 3)
    train_ep(replace(killed, resume=True))
    a, b = weights(tmp_path / "a" / "run" / "model.pt"), weights(tmp_path / "b" / "run" / "model.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_existing_run_needs_resume_and_same_settings(tmp_path):
    s = tiny(tmp_path, epochs=1)
    train_ep(s)
    with pytest.raises(ConfigError, match="--resume"):
        train_ep(s)
    with pytest.raises(ConfigError, match="beta"):
        train_ep(replace(s, resume=True, beta=0.2))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train_ep(replace(s, resume=True, out=str(tmp_path / "empty")))


def test_per_layer_learning_rates_are_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"lrs \(layer 0, layer 1, layer 2\) needs 1 or 3 values"):
        train_ep(tiny(tmp_path, lrs=(0.1, 0.2)))


def test_hardware_in_the_loop_training_keeps_one_chip_and_records_it(tmp_path):
    s = tiny(
        tmp_path,
        epochs=1,
        backend="crossbar",
        backend_options={"preset": "pcm", "overrides": ["chip_seed=4"], "reprogram_every": 2},
    )
    metrics = train_ep(replace(s, eval_steps=200))
    assert metrics["test_converged_fraction"] >= 0.99  # noisy reads settle on their residual plateau
    meta = load_checkpoint(tmp_path / "run" / "model.pt").meta
    assert meta["settings"]["backend"] == "crossbar"
    assert meta["settings"]["backend_options"]["preset"] == "pcm"


def test_persistent_free_states_are_kept_per_training_image(tmp_path):
    """free_init=image: after one epoch every training image has the free state its own phase reached."""
    train_ep(tiny(tmp_path, epochs=1, free_init="image"))
    blob = torch.load(tmp_path / "run" / "free-states.pt", weights_only=True)
    assert blob["mode"] == "image" and blob["n_images"] == 1257  # the digits training split
    shapes = load_model(tmp_path / "run" / "model.pt").state_shapes()
    assert [tuple(t.shape) for t in blob["states"]] == [(1257, *sh) for sh in shapes]
    assert all(t.dtype == torch.float16 for t in blob["states"])
    seen = [s.flatten(1).abs().sum(1) > 0 for s in blob["states"]]
    assert bool(seen[0].all())  # every image was visited once and stored its own row


def test_carried_states_file_of_another_run_is_refused(tmp_path):
    train_ep(tiny(tmp_path, epochs=1, free_init="image"))
    (tmp_path / "run" / "free-states.pt").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="free-states.pt"):
        train_ep(tiny(tmp_path, epochs=1, free_init="image", resume=True))


def test_unknown_recipe_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="nudging"):
        train_ep(tiny(tmp_path, nudging="sideways"))
    with pytest.raises(ConfigError, match="free_init"):
        train_ep(tiny(tmp_path, free_init="student"))
    assert not (tmp_path / "run").exists()


def test_a_resume_without_the_carried_states_file_restarts_them(tmp_path, capsys):
    """The 0.72 GB file may not travel with a run folder: one warning, and training continues."""
    train_ep(tiny(tmp_path, epochs=1, free_init="image"))
    (tmp_path / "run" / "free-states.pt").unlink()
    train_ep(tiny(tmp_path, epochs=1, free_init="image", resume=True))
    err = capsys.readouterr().err
    assert "free-states.pt is missing" in err and "null state" in err
