"""The resumable SGD loop shared by every feed-forward trainer (``train bp``, ``train adv``, ``distill``).

A trainer supplies the per-batch loss (plain cross-entropy, cross-entropy on PGD examples,
the distillation loss against teacher fixed points) and an evaluation; this loop does the
rest the way ``ephw train ep`` does: seeded batch order and augmentation
(:func:`~ephw.training.run.epoch_batches`, :func:`~ephw.training.run.seeded`), SGD with
momentum and one learning rate / weight decay per parameter group of the model
(``model.layer_groups()``), a cosine schedule, ``metrics.jsonl`` rows and atomic,
resumable checkpoints (:class:`~ephw.training.run.RunDir`).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ephw.data import ImageSet, random_crop_flip
from ephw.errors import ConfigError
from ephw.training.run import Position, RunDir, epoch_batches, iterate_from, seeded
from ephw.training.train_ep import per_layer

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
    """Train (or, with ``s.resume``, continue training) ``model`` in the run folder ``s.out``.

    ``evaluate(model)`` runs at the end of every epoch (model in eval mode) and its dict is
    logged as an ``epoch`` row. Returns the run folder; writing ``model.pt`` and
    ``metrics.json`` is left to the trainer.
    """
    if s.epochs < 1 or s.batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {s.epochs} and {s.batch_size}")
    if s.max_batches is not None and s.max_batches < 1:
        raise ConfigError(f"max_batches must be >= 1, got {s.max_batches}")
    device = torch.device(s.device)
    model.to(device)
    groups = model.layer_groups()
    lrs = per_layer(s.lrs, len(groups), f"lrs ({', '.join(name for name, _ in groups)})")
    wds = per_layer(s.weight_decays, len(groups), "weight_decays")
    optimizer = torch.optim.SGD(
        [{"params": p, "lr": lr, "weight_decay": wd} for (_, p), lr, wd in zip(groups, lrs, wds)],
        lr=lrs[0],
        momentum=s.momentum,
    )

    def batches_of(epoch: int) -> list[Tensor]:
        return epoch_batches(len(train), s.batch_size, s.seed, epoch)[: s.max_batches]

    per_epoch = len(batches_of(0))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs * per_epoch, eta_min=s.lr_min)
    run = RunDir(s.out)
    position = Position()
    if s.resume:
        ckpt, position = run.load_state(s, feedforward=True)
        model.load_state_dict(ckpt.state_dict)
        optimizer.load_state_dict(ckpt.training["optimizer"])
        scheduler.load_state_dict(ckpt.training["scheduler"])
        run.metrics.write(event="resume", epoch=position.epoch, batch=position.batch)
    elif run.checkpoint.exists():
        raise ConfigError(f"{run.checkpoint} exists: pass --resume to continue that run, or choose another --out")
    augment = resolve_augment(s)

    def save() -> None:
        run.save_state(model, optimizer, scheduler, position, s, meta)

    done = position.epoch * per_epoch + position.batch
    total = s.epochs * per_epoch
    bar = tqdm(total=total, initial=done, disable=not s.progress, file=sys.stderr, unit="batch", dynamic_ncols=True)
    window: list[dict[str, float]] = []
    try:
        for epoch, b, idx, n_batches in iterate_from(position, s.epochs, batches_of):
            x, y = train.batch(idx)
            if augment:
                x = random_crop_flip(x, 4, generator=seeded(s.seed, epoch, b))
            x, y = x.to(device), y.to(device)
            model.train()
            loss, logs = batch_loss(model, x, y, idx, epoch, b)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ConfigError(
                    f"training diverged (loss {value}) at epoch {epoch + 1} batch {b + 1}; "
                    f"the last good state is kept in {run.checkpoint} -- lower the learning rates"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            position = Position(epoch, b + 1)
            window.append({"loss": value, **logs})
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}")
            if len(window) == 20 or b + 1 == n_batches:
                mean = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
                lr = optimizer.param_groups[0]["lr"]
                run.metrics.write(event="train", epoch=epoch + 1, batch=b + 1, lr=lr, **mean)
                window.clear()
            if (b + 1) % s.checkpoint_every == 0 and b + 1 < n_batches:
                save()
            if b + 1 == n_batches:
                metrics = evaluate(model.eval())
                run.metrics.write(event="epoch", epoch=epoch + 1, **metrics)
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                bar.write(f"epoch {epoch + 1}: {shown}", file=sys.stderr)
                position = Position(epoch + 1, 0)
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        raise
    bar.close()
    return run


def write_metrics_json(root: str | Path, metrics: dict[str, Any]) -> Path:
    """Write the final metrics of a run to ``root/metrics.json``."""
    path = Path(root) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


@torch.no_grad()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 512, device: str | torch.device = "cpu") -> Tensor:
    """Predicted classes ``(n,)`` of every image of ``data`` (model in eval mode)."""
    model.eval()
    out = []
    for lo in range(0, len(data), batch_size):
        x, _ = data.batch(slice(lo, lo + batch_size))
        out.append(model(x.to(device)).argmax(1).cpu())
    return torch.cat(out)
