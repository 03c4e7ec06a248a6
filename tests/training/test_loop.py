"""The shared training loop: a run killed at any instant and resumed records what an uninterrupted run records."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from ephw.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ephw.data import ImageSet
from ephw.errors import ConfigError, OutputError
from ephw.model import ConvSpec, EnergyModel, ModelConfig
from ephw.signals import Terminated
from ephw.training import loop
from ephw.training.run import MetricsLog, Position, RunDir, row_position, run_lock, settings_diff
from ephw.training.train_ep import EPTrainSettings


class Killed(BaseException):
    """What kill -9 does to the loop: it stops, nothing (no handler, no checkpoint) runs after."""


@dataclass
class Settings:
    epochs: int = 2
    batch_size: int = 8
    lrs: tuple[float, ...] = (0.05,)
    weight_decays: tuple[float, ...] = (1e-3,)
    momentum: float = 0.9
    lr_min: float = 1e-4
    seed: int = 0
    out: str = "run"
    device: str = "cpu"
    resume: bool = False
    checkpoint_every: int = 3
    progress: bool = False
    max_batches: int | None = None


def make_net() -> EnergyModel:
    torch.manual_seed(0)
    return EnergyModel(ModelConfig(in_shape=(1, 8, 8), convs=(ConvSpec(3, 1), ConvSpec(4, 1)), dense=(6,), classes=3))


def images(n: int = 44) -> ImageSet:
    g = torch.Generator().manual_seed(1)
    return ImageSet(
        "toy", "train", torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g), ("a", "b", "c")
    )


class Trainer:
    """A tiny model, a deterministic step and evaluation, and injected deaths."""

    def __init__(self, out: Path, die: dict[str, Any] | None = None) -> None:
        self.s = Settings(out=str(out))
        self.die = die or {}
        self.steps = 0
        self.evals = 0

    def run(self, resume: bool = False) -> RunDir:
        net = make_net()
        train = images()

        def step(x, y, idx, epoch, b):
            self.steps += 1
            if self.steps == self.die.get("step"):
                raise self.die.get("how", Killed)()
            loss = sum((p**2).sum() for p in net.parameters()) * x.double().mean() + y.double().mean()
            loss.backward()
            return {"loss": float(loss.detach()), "b": float(b)}

        def evaluate(model):
            self.evals += 1
            if self.evals == self.die.get("eval"):
                raise self.die.get("how", Killed)()
            with torch.no_grad():
                return {"test_accuracy": float(sum(p.double().sum() for p in model.parameters()))}

        groups = [(f"layer {j}", m.parameters()) for j, m in enumerate(net.synapses)]
        s = replace(self.s, resume=resume)
        with run_lock(s.out):
            run = loop.fit(net, groups, s, train, step, evaluate, {"toy": True}, augment=True)
        self.net = net
        return run


def records(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows if r["event"] != "resume"]


def finish(out: Path, die: dict[str, Any], monkeypatch=None, write_dies_after: str | None = None) -> Trainer:
    """Run until the injected death, then resume (as often as it takes) to the end."""
    t = Trainer(out, die)
    with pytest.raises((Killed, KeyboardInterrupt)):
        if write_dies_after is not None:
            real = MetricsLog.write

            def dying_write(self, **row):
                real(self, **row)
                if row["event"] == write_dies_after and row.get("batch", 0) in (0, 6):
                    raise Killed()

            monkeypatch.setattr(MetricsLog, "write", dying_write)
            try:
                t.run()
            finally:
                monkeypatch.setattr(MetricsLog, "write", real)
        else:
            t.run()
    t.die = {}
    t.run(resume=(out / "checkpoint.pt").exists())  # killed before the first checkpoint: start again
    return t


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    t = Trainer(tmp_path_factory.mktemp("straight") / "run")
    run = t.run()
    return records(Path(t.s.out)), {k: v.clone() for k, v in t.net.state_dict().items()}, run.last_metrics


def same_as_straight(t: Trainer, straight) -> None:
    rows, weights, last = straight
    assert records(Path(t.s.out)) == rows
    for k, v in t.net.state_dict().items():
        assert torch.equal(v, weights[k]), k
    ckpt = load_checkpoint(Path(t.s.out) / "checkpoint.pt")
    assert ckpt.training["last_metrics"] == last and (ckpt.training["epoch"], ckpt.training["batch"]) == (2, 0)


@pytest.mark.parametrize(
    "die",
    [
        {"step": 2},  # before the first checkpoint
        {"step": 5},  # mid-epoch, after a checkpoint with a half-full row window
        {"step": 7},  # first batch of epoch 2
        {"eval": 1},  # kill -9 inside the end-of-epoch evaluation
        {"eval": 1, "how": KeyboardInterrupt},  # Ctrl-C inside it
        {"eval": 1, "how": Terminated},  # SIGTERM inside it
        {"eval": 2},  # inside the last evaluation
        {"step": 4, "how": KeyboardInterrupt},
    ],
    ids=lambda d: "-".join(f"{k}{getattr(v, '__name__', v)}" for k, v in d.items()),
)
def test_killed_anywhere_and_resumed_records_the_same_as_an_uninterrupted_run(tmp_path, straight, die):
    t = finish(tmp_path / "run", die)
    same_as_straight(t, straight)


@pytest.mark.parametrize("row", ["epoch", "train"])
def test_killed_right_after_a_row_before_its_checkpoint(tmp_path, straight, monkeypatch, row):
    # epoch: between the epoch row and the epoch-end checkpoint; train: the row of batch 6, then no checkpoint
    t = finish(tmp_path / "run", {}, monkeypatch, write_dies_after=row)
    same_as_straight(t, straight)


def test_interrupt_during_evaluation_leaves_it_pending_and_resume_runs_it(tmp_path):
    t = Trainer(tmp_path / "run", {"eval": 1, "how": KeyboardInterrupt})
    with pytest.raises(KeyboardInterrupt):
        t.run()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt").training
    assert (state["epoch"], state["batch"]) == (0, 6) and state["last_metrics"] == {}
    t.die = {}
    run = t.run(resume=True)
    epochs = [r for r in records(tmp_path / "run") if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and run.last_metrics == {"test_accuracy": epochs[-1]["test_accuracy"]}


def test_checkpoint_of_the_old_format_still_resumes(tmp_path, straight):
    # a checkpoint written before "window" and "last_metrics" existed (e.g. reproduce/cifar10/ep-s0)
    t = Trainer(tmp_path / "run", {"step": 10})
    with pytest.raises(Killed):
        t.run()
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    old = {k: ckpt.training[k] for k in ("optimizer", "scheduler", "epoch", "batch", "settings")}
    save_checkpoint(path, Checkpoint(ckpt.config, ckpt.state_dict, ckpt.meta, old))
    t.die = {}
    t.run(resume=True)
    for k, v in t.net.state_dict().items():
        assert torch.equal(v, straight[1][k]), k
    assert [r["epoch"] for r in records(tmp_path / "run") if r["event"] == "epoch"] == [1, 2]


def test_ep_settings_saved_by_the_running_cifar_run_still_match():
    # the settings JSON of reproduce/cifar10/ep-s0's checkpoint, written before any field was added
    saved = {
        "activation": "laborieux", "augment": None, "backend": "async", "backend_options": {}, "batch_size": 128,
        "beta": 0.5, "checkpoint_every": 50, "config": "cpu-small", "data": "cifar10", "data_root": None,
        "device": "cpu", "epochs": 20, "eval_steps": 500, "eval_tol": 1e-05, "free_steps": 30, "init_scale": None,
        "lr_min": 1e-05, "lrs": [0.1, 0.06, 0.04, 0.03, 0.02], "momentum": 0.9, "nudge_steps": 10,
        "out": "reproduce/cifar10/ep-s0", "output": "softmax", "progress": True, "resume": False, "seed": 0,
        "tol": None, "weight_decays": [0.0003],
    }  # fmt: skip
    same = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    s = EPTrainSettings(**{**same, "resume": True})
    assert settings_diff(saved, s) == []
    assert settings_diff(saved, replace(s, beta=0.25)) == ["beta"]


def test_a_field_added_later_counts_as_its_default_in_an_old_checkpoint():
    @dataclass
    class Later(Settings):
        flag: bool = False
        extra: dict = field(default_factory=lambda: {"a": 1})

    old = json.loads(json.dumps(asdict(Settings())))
    assert settings_diff(old, Later()) == []
    assert settings_diff(old, Later(flag=True)) == ["flag"]
    assert settings_diff(old, Later(extra={})) == ["extra"]


def test_second_run_on_the_same_folder_is_refused(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(OutputError, match=r"in use by another ephw run \(pid \d+\)"):
            Trainer(tmp_path / "run").run()
    Trainer(tmp_path / "run").run()  # the lock is gone with its holder


def test_bad_loop_settings_are_one_line_errors(tmp_path):
    t = Trainer(tmp_path / "run")
    t.s.checkpoint_every = 0
    with pytest.raises(ConfigError, match="checkpoint_every must be >= 1"):
        t.run()


@dataclass
class TimedSettings(Settings):
    timing_batch: int = 256  # as distill's: used after training only


def test_resume_accepts_changed_after_training_settings_and_refuses_changed_training(tmp_path):
    t = Trainer(tmp_path / "run")
    t.s = TimedSettings(out=t.s.out, epochs=1)
    t.run()  # a finished run (distill's timing would come next)
    t.s = replace(t.s, timing_batch=64)
    t.run(resume=True)  # e.g. distill --resume --timing-batch 64 after --timing-batch 0 failed
    t.s = replace(t.s, lrs=(0.1,))
    with pytest.raises(ConfigError, match=r"settings differ from the checkpointed run in lrs"):
        t.run(resume=True)


def test_the_resume_row_counts_epochs_as_train_rows_do_and_old_rows_still_read(tmp_path):
    """Issue 34 item 10: the ``resume`` row's epoch is 1-based, as every other row's; old 0-based rows still read."""
    out = tmp_path / "run"
    t = Trainer(out, {"step": 11})  # epoch 2 (1-based), past the checkpoint after its 3rd batch
    with pytest.raises(Killed):
        t.run()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["training"]
    epoch, batch = int(saved["epoch"]), int(saved["batch"])  # 0-based epoch, batches done in it
    assert (epoch, batch) == (1, 3)
    t.die = {}
    t.run(resume=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    resume = next(r for r in rows if r["event"] == "resume")
    assert (resume["epoch"], resume["batch"]) == (2, 3)
    after = next(r for r in rows[rows.index(resume) :] if r["event"] == "train")
    assert after["epoch"] == 2 and after["batch"] > 3  # the next train row: the same epoch, counted the same way
    assert row_position(resume) == Position(1, 3)
    assert row_position({"event": "resume", "epoch": 1, "batch": 3}) == Position(1, 3)  # a file of older ephw
