"""``ephw train bp``: BP-CNN, the EP-CNN topology trained with backpropagation (the seed paper's baseline).

The network is :class:`~ephw.feedforward.EPTopologyCNN` built from the same named configs as
``ephw train ep`` (softmax readout), with the EP hard sigmoid or -- as LANL's AdvEP
baseline -- BatchNorm + ReLU. :func:`train_classifier` is also the loop of ``ephw train adv``,
which only swaps the clean batch for PGD examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ephw import distributed
from ephw.data import ImageSet, dataset_stats, load_dataset
from ephw.errors import ConfigError
from ephw.feedforward import CNNSpec, EPTopologyCNN, save_feedforward
from ephw.model import ACTIVATIONS, named_config
from ephw.training.feedforward_loop import SGDSettings, fit, predict, write_metrics_json
from ephw.training.loop import check_loop_settings
from ephw.training.run import run_lock

#: ``--activation`` values: the EP hard sigmoids (``ACTIVATIONS``) or ``relu-bn``.
BP_ACTIVATIONS = (*ACTIVATIONS, "relu-bn")

#: ``(model, x, y, epoch, batch) -> x'``: images the loss is computed on (clean: ``x`` itself).
Perturb = Callable[[nn.Module, Tensor, Tensor, int, int], Tensor]


@dataclass
class BPTrainSettings(SGDSettings):
    """A BP-CNN run: :class:`SGDSettings` plus the architecture.

    ``config`` is a named EP config (``digits``, ``cpu-small``, ``paper``); ``activation`` is
    ``laborieux`` (the EP hard sigmoid ``clamp(u / 2, 0, 1)``), ``clamp`` or ``relu-bn``.
    Defaults are for digits; :data:`BP_CIFAR_DEFAULTS` holds the CIFAR ones.
    """

    config: str = "digits"
    activation: str = "laborieux"


#: CIFAR defaults (``cpu-small``): Laborieux et al.'s batch size, one learning rate.
BP_CIFAR_DEFAULTS: dict[str, Any] = dict(config="cpu-small", batch_size=128, lrs=(0.05,), epochs=20)


def build_bp_model(s: BPTrainSettings, classes: int) -> EPTopologyCNN:
    """The BP-CNN of ``s`` (weights seeded by ``s.seed``)."""
    if s.activation not in BP_ACTIVATIONS:
        raise ConfigError(f"unknown activation {s.activation!r}; valid: {', '.join(BP_ACTIVATIONS)}")
    mean, std = dataset_stats(s.data)
    hard = s.activation != "relu-bn"
    cfg = named_config(
        s.config,
        classes=classes,
        output="softmax",
        activation=s.activation if hard else "laborieux",
        input_mean=mean,
        input_std=std,
    )
    torch.manual_seed(s.seed)
    return EPTopologyCNN(CNNSpec(cfg, "hard-sigmoid" if hard else "relu-bn"))


def accuracy_on(model: nn.Module, data: ImageSet, device: str) -> float:
    """Clean accuracy of ``model`` on every image of ``data``."""
    return float((predict(model, data, device=device) == data.labels).float().mean())


def train_classifier(
    s: BPTrainSettings, trainer: str = "bp", perturb: Perturb | None = None, extra_meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train a BP-CNN with cross-entropy on ``perturb(x)`` (default the clean batch); returns the final metrics.

    Writes ``checkpoint.pt``, ``metrics.jsonl``, ``model.pt`` (feed-forward checkpoint) and
    ``metrics.json`` into ``s.out``.
    """
    check_loop_settings(s)
    with run_lock(s.out):
        return _train_classifier(s, trainer, perturb, extra_meta)


def _train_classifier(
    s: BPTrainSettings, trainer: str = "bp", perturb: Perturb | None = None, extra_meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    train = load_dataset(s.data, "train", s.data_root)
    test = load_dataset(s.data, "test", s.data_root)
    if s.test_n is not None:
        test = test.subset(s.test_n)
    model = build_bp_model(s, len(train.classes))
    if tuple(model.spec.config.in_shape) != train.image_shape:
        raise ConfigError(
            f"config {s.config!r} expects images {model.spec.config.in_shape} but {s.data} has {train.image_shape}"
        )
    meta = {"data": s.data, "trainer": trainer, "settings": asdict(s), **(extra_meta or {})}

    def batch_loss(m: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int, b: int) -> tuple[Tensor, dict]:
        if perturb is not None:
            x = perturb(m, x, y, epoch, b)
            m.train()
        logits = m(x)
        return F.cross_entropy(logits, y), {"accuracy": float((logits.argmax(1) == y).float().mean())}

    def evaluate(m: nn.Module) -> dict[str, Any]:
        return {"test_accuracy": accuracy_on(m, test, s.device), "test_n": len(test)}

    run = fit(model, s, train, batch_loss, evaluate, meta)
    metrics = {"trainer": trainer, "data": s.data, **evaluate(model.eval())}
    meta["metrics"] = metrics
    if distributed.is_main():
        save_feedforward(run.model, model, meta)
        write_metrics_json(run.root, metrics)
    return metrics


def train_bp(s: BPTrainSettings) -> dict[str, Any]:
    """Run (or resume) BP-CNN training; returns the final metrics."""
    return train_classifier(s, "bp")
