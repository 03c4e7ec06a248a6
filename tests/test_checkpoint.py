"""Checkpoints load without executing code and fail loudly on foreign or damaged files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from ephw.checkpoint import BUNDLED_MODEL, Checkpoint, load_checkpoint, save_checkpoint, save_model
from ephw.loading import load_model
from ephw.errors import CheckpointError


def test_roundtrip_preserves_weights_config_and_meta(net_factory, tmp_path):
    net = net_factory("mse", "clamp")
    path = save_model(tmp_path / "m.pt", net, {"data": "digits", "note": "x"})
    ckpt = load_checkpoint(path)
    assert ckpt.config == net.config and ckpt.meta == {"data": "digits", "note": "x"}
    back = load_model(path, dtype=torch.float64)
    for (k, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_bundled_model_loads():
    net = load_model()
    assert net.config.in_shape == (1, 8, 8)
    assert load_checkpoint(BUNDLED_MODEL).meta["data"] == "digits"


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert "not found" in one_line(err.value)


def test_truncated_file(net_factory, tmp_path):
    path = save_model(tmp_path / "m.pt", net_factory())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "truncated" in one_line(err.value)


def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(plain)
    assert "not an ephw checkpoint" in one_line(err.value)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > evil.txt",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_in_a_pickle_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "ephw.checkpoint", "payload": _Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "evil.txt").exists()


def test_weights_not_matching_architecture(net_factory, tmp_path):
    net = net_factory()
    state = net.state_dict()
    state["convs.0.weight"] = torch.zeros(1)
    path = save_checkpoint(tmp_path / "bad.pt", Checkpoint(net.config, state))
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "do not match" in one_line(err.value)


def test_save_is_atomic(net_factory, tmp_path, monkeypatch):
    net = net_factory()
    path = save_model(tmp_path / "m.pt", net, {"v": 1})

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_model(path, net, {"v": 2})
    assert load_checkpoint(path).meta == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
