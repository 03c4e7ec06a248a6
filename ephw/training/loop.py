"""The resumable SGD loop every trainer shares (``train ep``, ``train bp``, ``train adv``, ``distill``).

A trainer supplies one batch step (which leaves the gradients in ``p.grad``: EP's
two-phase estimate, or ``loss.backward()``) and an evaluation; this loop does the rest:
seeded batch order and augmentation (:func:`~ephw.training.run.epoch_batches`,
:func:`~ephw.training.run.seeded`), SGD with momentum and one learning rate / weight decay
per parameter group, a cosine schedule, ``metrics.jsonl`` rows, and atomic, resumable
checkpoints (:class:`~ephw.training.run.RunDir`) -- also on Ctrl-C.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ephw import distributed
from ephw.data import ImageSet, random_crop_flip
from ephw.errors import ConfigError
from ephw.model import EnergyModel
from ephw.signals import deferred
from ephw.training import noise_aware
from ephw.training.run import Position, RunDir, epoch_batches, resume_row, seeded

#: ``(x, y, idx, epoch, batch) -> logs``: one training step on the (augmented) batch
#: ``x (B, C, H, W)``, ``y (B,)`` (``idx``: its indices into the training set). It must leave
#: the gradient of every trained parameter in ``p.grad`` and return floats to log, with
#: ``"loss"`` among them.
BatchStep = Callable[[Tensor, Tensor, Tensor, int, int], dict[str, float]]


class CarriedState(Protocol):
    """Training state a trainer keeps outside the model and optimizer (e.g. EP's carried free
    states); saved with every checkpoint, into the run folder, and loaded on resume."""

    def save(self, root: str | Path) -> None: ...

    def load(self, root: str | Path) -> None: ...


def per_layer(values: tuple[float, ...], n: int, what: str) -> list[float]:
    """``values`` for ``n`` layers: one value for all, or exactly one per layer (else :class:`ConfigError`)."""
    if len(values) == 1:
        return [float(values[0])] * n
    if len(values) != n:
        raise ConfigError(f"{what} needs 1 or {n} values (one per layer), got {len(values)}")
    return [float(v) for v in values]


def check_loop_settings(s: Any) -> None:
    """Refuse loop settings no run can use (:class:`ConfigError`); trainers call it before writing anything."""
    max_batches = getattr(s, "max_batches", None)
    if s.epochs < 1 or s.batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {s.epochs} and {s.batch_size}")
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"max_batches must be >= 1, got {max_batches}")
    if s.checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every must be >= 1 (batches between checkpoints), got {s.checkpoint_every}")


def fit(
    model: nn.Module,
    groups: list[tuple[str, Iterable[nn.Parameter]]],
    s: Any,
    train: ImageSet,
    step: BatchStep,
    evaluate: Callable[[nn.Module], dict[str, Any]],
    meta: dict[str, Any],
    augment: bool,
    carried: CarriedState | None = None,
) -> RunDir:
    """Train (or, with ``s.resume``, continue training) ``model`` in the run folder ``s.out``.

    Args:
        model: an :class:`EnergyModel` or a feed-forward model (its checkpoint format follows).
        groups: ``(name, parameters)`` per learning-rate group, matched with ``s.lrs`` and
            ``s.weight_decays`` (one value each, or one for all).
        s: the trainer's settings dataclass (stored in checkpoints; a resumed run must match):
            ``epochs, batch_size, lrs, weight_decays, momentum, lr_min, seed, out, device,
            resume, checkpoint_every, progress`` and optionally ``max_batches``.
        train: the training images.
        step: one batch step (:data:`BatchStep`).
        evaluate: called with the model in eval mode after every epoch; its dict is logged.
        meta: stored in every checkpoint.
        augment: random crop (4 px) + flip, seeded by ``(seed, epoch, batch)``.
        carried: more training state, written just before each checkpoint and loaded on resume.

    Every row of ``metrics.jsonl`` and every checkpoint is the same whether or not the run was
    killed and resumed, whenever it was killed: a checkpoint is written before each
    end-of-epoch evaluation (marking it pending, so a resume runs it) and after it; a resume
    drops the rows written after its checkpoint.

    Returns the run folder (``run.last_metrics``: the last evaluation's); writing
    ``model.pt`` is left to the trainer, which holds :func:`~ephw.training.run.run_lock`.
    """
    check_loop_settings(s)
    step = noise_aware.wrap_step(step, model, getattr(s, "noise_aware", None), s.seed, meta)  # --noise-aware
    max_batches = getattr(s, "max_batches", None)
    device = torch.device(s.device)
    model.to(device)
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())  # images follow the model
    lrs = per_layer(s.lrs, len(groups), f"lrs ({', '.join(name for name, _ in groups)})")
    wds = per_layer(s.weight_decays, len(groups), "weight_decays")
    optimizer = torch.optim.SGD(
        [{"params": list(p), "lr": lr, "weight_decay": wd} for (_, p), lr, wd in zip(groups, lrs, wds)],
        lr=lrs[0],
        momentum=s.momentum,
    )

    def batches_of(epoch: int) -> list[Tensor]:
        return epoch_batches(len(train), s.batch_size, s.seed, epoch)[:max_batches]

    per_epoch = len(batches_of(0))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs * per_epoch, eta_min=s.lr_min)
    run = RunDir(s.out)
    position = Position()
    window: list[dict[str, float]] = []  # per-batch logs of the next train row
    if s.resume:
        ckpt, position = run.load_state(s, feedforward=not isinstance(model, EnergyModel))
        model.load_state_dict(ckpt.state_dict)
        optimizer.load_state_dict(ckpt.training["optimizer"])
        scheduler.load_state_dict(ckpt.training["scheduler"])
        window = [dict(w) for w in ckpt.training.get("window", [])]
        if carried is not None:
            carried.load(run.root)
        run.last_metrics = dict(ckpt.training.get("last_metrics", {}))
        run.metrics.trim_to(position)  # rows a killed run wrote after this checkpoint come again
        run.metrics.write(**resume_row(position))
    elif run.checkpoint.exists():
        raise ConfigError(f"{run.checkpoint} exists: pass --resume to continue that run, or choose another --out")
    else:
        run.metrics.trim_to(position)  # rows of a run killed before its first checkpoint

    def save() -> None:
        if carried is not None:
            carried.save(run.root)
        run.save_state(model, optimizer, scheduler, position, s, meta, window)

    done = position.epoch * per_epoch + position.batch
    bar = tqdm(
        total=s.epochs * per_epoch,
        initial=done,
        disable=not (s.progress and distributed.is_main()),
        file=sys.stderr,
        unit="batch",
        dynamic_ncols=True,
    )
    try:
        for epoch in range(position.epoch, s.epochs):
            batches = batches_of(epoch)
            n_batches = len(batches)
            # a checkpoint at (epoch, n_batches) has trained the epoch but not evaluated it yet
            for b in range(position.batch if epoch == position.epoch else 0, n_batches):
                x, y = train.batch(batches[b])
                if augment:
                    x = random_crop_flip(x, 4, generator=seeded(s.seed, epoch, b))
                # under torchrun each rank trains its shard of the (augmented) global batch
                part, n_global = distributed.begin_step(len(y)), len(y)
                x, y, idx = x[part].to(device, dtype), y[part].to(device), batches[b][part]
                optimizer.zero_grad(set_to_none=True)
                logs = step(x, y, idx, epoch, b) if len(y) else {}
                logs = distributed.finish_step(model, logs, len(y), n_global)  # global-batch grads and logs
                if not math.isfinite(logs["loss"]):
                    raise ConfigError(
                        f"training diverged (loss {logs['loss']}) at epoch {epoch + 1} batch {b + 1}; "
                        f"the last good state is kept in {run.checkpoint} -- lower the learning rates"
                    )
                with deferred():  # the step, its position and its row: all or none
                    optimizer.step()
                    scheduler.step()
                    position = Position(epoch, b + 1)
                    window.append(logs)
                    if len(window) == 20 or b + 1 == n_batches:
                        mean = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
                        lr = optimizer.param_groups[0]["lr"]
                        run.metrics.write(event="train", epoch=epoch + 1, batch=b + 1, lr=lr, **mean)
                        window.clear()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, **{k: f"{v:.4g}" for k, v in logs.items()})
                if (b + 1) % s.checkpoint_every == 0 or b + 1 == n_batches:
                    save()  # the last one: trained, evaluation pending
            metrics = evaluate(model.eval())
            with deferred():
                run.metrics.write(event="epoch", epoch=epoch + 1, **metrics)
                run.last_metrics = dict(metrics)
                position = Position(epoch + 1, 0)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            if distributed.is_main():
                bar.write(f"epoch {epoch + 1}: {shown}", file=sys.stderr)
            save()
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (ephw.signals.Terminated)
        save()
        bar.close()
        raise
    bar.close()
    return run
