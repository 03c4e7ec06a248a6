"""Feed-forward checkpoints: rebuild from the JSON spec, refuse EP / foreign / damaged files."""

from __future__ import annotations

import pytest
import torch

from ephw.checkpoint import BUNDLED_MODEL, load_checkpoint, save_model
from ephw.errors import CheckpointError
from ephw.feedforward import (
    CNNSpec,
    EPTopologyCNN,
    ResNet18,
    ResNetSpec,
    load_feedforward,
    read_feedforward_checkpoint,
    save_feedforward,
)


@pytest.mark.parametrize("kind", ["cnn", "relu-bn", "resnet18"])
def test_roundtrip_rebuilds_the_same_function(net_factory, tmp_path, kind):
    torch.manual_seed(0)
    if kind == "resnet18":
        model = ResNet18(ResNetSpec((1, 8, 8), 3, 4))
    else:
        model = EPTopologyCNN(CNNSpec(net_factory("mse").config, "relu-bn" if kind == "relu-bn" else "hard-sigmoid"))
    model.train()
    model(torch.rand(8, 1, 8, 8))  # move BatchNorm running statistics away from their init
    path = save_feedforward(tmp_path / "m.pt", model.eval(), {"data": "digits", "note": kind})
    back, meta = load_feedforward(path)
    assert meta == {"data": "digits", "note": kind} and not back.training
    assert type(back) is type(model) and back.spec == model.spec
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_ep_checkpoint_is_refused_naming_its_format(tmp_path):
    with pytest.raises(CheckpointError, match="'ephw.checkpoint'") as err:
        load_feedforward(BUNDLED_MODEL)
    assert "\n" not in str(err.value)


def test_ep_loader_refuses_a_feedforward_checkpoint(net_factory, tmp_path):
    path = save_feedforward(tmp_path / "s.pt", EPTopologyCNN(CNNSpec(net_factory().config)))
    with pytest.raises(CheckpointError, match="not an ephw checkpoint.*'ephw.feedforward'"):
        load_checkpoint(path)


def test_missing_truncated_foreign_files(net_factory, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_feedforward(tmp_path / "nope.pt")
    path = save_feedforward(tmp_path / "s.pt", EPTopologyCNN(CNNSpec(net_factory().config)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_feedforward(path)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="no format"):
        load_feedforward(plain)


def test_weights_not_matching_spec_and_non_feedforward_models(net_factory, tmp_path):
    net = net_factory()
    model = EPTopologyCNN(CNNSpec(net.config))
    path = save_feedforward(tmp_path / "s.pt", model)
    ckpt = read_feedforward_checkpoint(path)
    ckpt.state_dict["convs.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="do not match"):
        ckpt.model()
    with pytest.raises(CheckpointError, match="not an ephw.feedforward model"):
        save_feedforward(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    save_model(tmp_path / "ep.pt", net)  # the EP format is untouched by the shared blob helpers
    assert load_checkpoint(tmp_path / "ep.pt").config == net.config
