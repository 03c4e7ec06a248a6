"""What every feed-forward trainer (``train bp``, ``train adv``, ``distill``) shares.

A trainer supplies the per-batch loss (plain cross-entropy, cross-entropy on PGD examples,
the distillation loss against teacher fixed points) and an evaluation; :func:`fit` turns it
into a step of the loop all trainers share (:mod:`ephw.training.loop`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ephw import distributed
from ephw.data import ImageSet
from ephw.outputs import atomic_write
from ephw.training import loop
from ephw.training.run import RunDir

#: ``(model, x, y, idx, epoch, batch) -> (loss, logs)``: the scalar loss of one (augmented)
#: batch ``x (B, C, H, W)``, ``y (B,)`` (``idx``: the batch's indices into the training set)
#: and extra floats to log.
BatchLoss = Callable[[nn.Module, Tensor, Tensor, Tensor, int, int], tuple[Tensor, dict[str, float]]]


@dataclass
class SGDSettings:
    """Options every feed-forward trainer shares (stored in its checkpoints).

    ``lrs`` and ``weight_decays`` hold one value per parameter group of the model
    (EP-topology CNN: one per synapse layer; ResNet-18: stem, 4 stages, classifier) or a
    single value for all. ``augment=None``: random crop (4 px) + flip for CIFAR, none for
    digits. ``max_batches`` caps the batches per epoch (``None``: the whole training set).
    ``test_n`` evaluates on the first ``test_n`` test images (``None``: all).
    """

    data: str | None = "digits"
    data_root: str | None = None
    epochs: int = 20
    batch_size: int = 32
    lrs: tuple[float, ...] = (0.05,)
    momentum: float = 0.9
    weight_decays: tuple[float, ...] = (5e-4,)
    lr_min: float = 1e-5
    augment: bool | None = None
    max_batches: int | None = None
    test_n: int | None = None
    seed: int = 0
    checkpoint_every: int = 50
    out: str = "runs/ff"
    device: str = "cpu"
    progress: bool = True
    resume: bool = False
    noise_aware: str | None = None  # PRESET[@T_SECONDS]: ephw.training.noise_aware


def resolve_augment(s: SGDSettings) -> bool:
    """``s.augment``, or its default: on for CIFAR, off for digits."""
    return s.augment if s.augment is not None else str(s.data).startswith("cifar")


def fit(
    model: nn.Module,
    s: SGDSettings,
    train: ImageSet,
    batch_loss: BatchLoss,
    evaluate: Callable[[nn.Module], dict[str, Any]],
    meta: dict[str, Any],
) -> RunDir:
    """Train (or, with ``s.resume``, continue training) ``model`` on ``batch_loss`` in the run folder ``s.out``.

    One learning-rate group per ``model.layer_groups()`` entry; ``evaluate(model)`` runs at the
    end of every epoch (model in eval mode). The loop is :func:`ephw.training.loop.fit`.
    """

    def step(x: Tensor, y: Tensor, idx: Tensor, epoch: int, b: int) -> dict[str, float]:
        model.train()
        loss, logs = batch_loss(model, x, y, idx, epoch, b)
        loss.backward()
        return {"loss": float(loss.detach()), **logs}

    return loop.fit(model, model.layer_groups(), s, train, step, evaluate, meta, augment=resolve_augment(s))


def write_metrics_json(root: str | Path, metrics: dict[str, Any]) -> Path:
    """Write the final metrics of a run to ``root/metrics.json`` (atomically)."""
    return atomic_write(Path(root) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")


@torch.no_grad()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 512, device: str | torch.device = "cpu") -> Tensor:
    """Predicted classes ``(n,)`` of every image of ``data`` (model in eval mode).

    Under torchrun each rank predicts its shard of ``data``; every rank returns all ``n``.
    """
    model.eval()
    dtype = next(model.parameters()).dtype
    part = distributed.shard(len(data))
    out = [torch.zeros(0, dtype=torch.int64)]
    for lo in range(part.start, part.stop, batch_size):
        x, _ = data.batch(slice(lo, min(lo + batch_size, part.stop)))
        out.append(model(x.to(device, dtype)).argmax(1).cpu())
    return distributed.gather_rows(torch.cat(out))
