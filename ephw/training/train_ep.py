"""``ephw train ep``: train an EP-CNN with symmetric nudging (Laborieux et al. 2021)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from ephw.backends import get_backend
from ephw.checkpoint import save_model
from ephw.data import dataset_stats, load_dataset, random_crop_flip
from ephw.errors import ConfigError
from ephw.inference import settle_dataset
from ephw.model import EnergyModel, named_config
from ephw.training.ep import ep_step
from ephw.training.run import Position, RunDir, epoch_batches, iterate_from, seeded


@dataclass
class EPTrainSettings:
    """Everything that defines an EP training run (stored in its checkpoints).

    ``lrs`` and ``weight_decays`` hold one value per synapse layer (convs, dense,
    output) or a single value for all. ``augment=None`` means random crop (4 px
    zero padding) + horizontal flip for CIFAR and nothing for digits. The defaults
    are those of the bundled digits model; :data:`CIFAR_DEFAULTS` holds the CIFAR ones.
    """

    data: str = "digits"
    data_root: str | None = None
    config: str = "digits"
    output: str = "softmax"
    activation: str = "laborieux"
    init_scale: float | None = None  # None: the named config's
    epochs: int = 20
    batch_size: int = 32
    lrs: tuple[float, ...] = (0.02,)
    momentum: float = 0.9
    weight_decays: tuple[float, ...] = (3e-4,)
    lr_min: float = 1e-5
    beta: float = 0.5
    free_steps: int = 40
    nudge_steps: int = 10
    tol: float | None = None
    backend: str = "async"
    backend_options: dict[str, Any] = field(default_factory=dict)  # e.g. crossbar preset/overrides
    augment: bool | None = None
    seed: int = 0
    eval_steps: int = 500
    eval_tol: float = 1e-5
    checkpoint_every: int = 50
    out: str = "runs/ep"
    device: str = "cpu"
    progress: bool = True
    resume: bool = False


#: Defaults for CIFAR-10/100 (``cpu-small``): Laborieux et al.'s batch size and weight
#: decay, their per-layer learning rates (0.25, 0.15, 0.1, 0.08, 0.05) scaled by 0.4, and
#: fewer (asynchronous) settling steps so an epoch fits 2 CPU cores. With their full rates
#: and 30 async free steps we saw runs collapse onto one class (docs/configs.md).
CIFAR_DEFAULTS = dict(
    config="cpu-small",
    batch_size=128,
    lrs=(0.1, 0.06, 0.04, 0.03, 0.02),
    weight_decays=(3e-4,),
    free_steps=30,
    nudge_steps=10,
    backend="async",
)


def per_layer(values: tuple[float, ...], n: int, what: str) -> list[float]:
    """``values`` for ``n`` layers: one value for all, or exactly one per layer (else :class:`ConfigError`)."""
    if len(values) == 1:
        return [float(values[0])] * n
    if len(values) != n:
        raise ConfigError(f"{what} needs 1 or {n} values (one per synapse layer), got {len(values)}")
    return [float(v) for v in values]


def build_model(s: EPTrainSettings, classes: int) -> EnergyModel:
    mean, std = dataset_stats(s.data)
    extra = {} if s.init_scale is None else {"init_scale": s.init_scale}
    cfg = named_config(
        s.config, classes=classes, output=s.output, activation=s.activation, input_mean=mean, input_std=std, **extra
    )
    torch.manual_seed(s.seed)
    return EnergyModel(cfg)


def train_ep(s: EPTrainSettings) -> dict[str, Any]:
    """Run (or resume) EP training; returns the final metrics. Writes into ``s.out``."""
    train = load_dataset(s.data, "train", s.data_root)
    test = load_dataset(s.data, "test", s.data_root)
    net = build_model(s, len(train.classes))
    if tuple(net.config.in_shape) != train.image_shape:
        raise ConfigError(
            f"config {s.config!r} expects images {net.config.in_shape} but {s.data} has {train.image_shape}"
        )
    device = torch.device(s.device)
    net.to(device)
    layers = net.synapses
    lrs = per_layer(s.lrs, len(layers), "lrs")
    wds = per_layer(s.weight_decays, len(layers), "weight_decays")
    optimizer = torch.optim.SGD(
        [{"params": m.parameters(), "lr": lr, "weight_decay": wd} for m, lr, wd in zip(layers, lrs, wds)],
        lr=lrs[0],
        momentum=s.momentum,
    )
    per_epoch = math.ceil(len(train) / s.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs * per_epoch, eta_min=s.lr_min)
    run = RunDir(s.out)
    position = Position()
    if s.resume:
        ckpt, position = run.load_state(s)
        net.load_state_dict(ckpt.state_dict)
        optimizer.load_state_dict(ckpt.training["optimizer"])
        scheduler.load_state_dict(ckpt.training["scheduler"])
        run.metrics.write(event="resume", epoch=position.epoch, batch=position.batch)
    elif run.checkpoint.exists():
        raise ConfigError(f"{run.checkpoint} exists: pass --resume to continue that run, or choose another --out")
    augment = s.augment if s.augment is not None else s.data.startswith("cifar")
    # one backend instance for the whole run: a hardware backend keeps its chip and
    # re-programs the updated weights onto it
    backend = get_backend(s.backend, **s.backend_options)
    meta = {"data": s.data, "trainer": "ep", "settings": asdict(s)}

    def save() -> None:
        run.save_state(net, optimizer, scheduler, position, s, meta)

    total = s.epochs * per_epoch
    done = position.epoch * per_epoch + position.batch
    bar = tqdm(total=total, initial=done, disable=not s.progress, file=sys.stderr, unit="batch", dynamic_ncols=True)
    window: list[tuple[float, float, float]] = []
    last = {}
    try:
        for epoch, b, idx, n_batches in iterate_from(
            position, s.epochs, lambda e: epoch_batches(len(train), s.batch_size, s.seed, e)
        ):
            x, y = train.batch(idx)
            if augment:
                x = random_crop_flip(x, 4, generator=seeded(s.seed, epoch, b))
            x, y = x.to(device), y.to(device)
            step = ep_step(
                net, x, y, backend=backend, beta=s.beta, free_steps=s.free_steps, nudge_steps=s.nudge_steps, tol=s.tol
            )
            with torch.no_grad():
                loss = float(net.loss(step.free.states, y).mean())
                acc = float((step.free.predictions == y).float().mean())
            if not math.isfinite(loss):
                raise ConfigError(
                    f"training diverged (loss {loss}) at epoch {epoch + 1} batch {b + 1}; "
                    f"the last good state is kept in {run.checkpoint} -- lower the learning rates"
                )
            for p, g in zip(net.parameters(), step.grads):
                p.grad = g
            optimizer.step()
            scheduler.step()
            position = Position(epoch, b + 1)
            window.append((loss, acc, float(step.free.steps)))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", acc=f"{acc:.3f}", T=step.free.steps)
            if len(window) == 20 or b + 1 == n_batches:
                mean = [sum(v) / len(v) for v in zip(*window)]
                run.metrics.write(
                    event="train",
                    epoch=epoch + 1,
                    batch=b + 1,
                    loss=mean[0],
                    accuracy=mean[1],
                    free_steps=mean[2],
                    lr=optimizer.param_groups[0]["lr"],
                )
                window.clear()
            if (b + 1) % s.checkpoint_every == 0 and b + 1 < n_batches:
                save()
            if b + 1 == n_batches:
                t0 = time.perf_counter()
                ev = settle_dataset(net.eval(), test, backend, steps=s.eval_steps, tol=s.eval_tol, batch_size=256)
                last = {
                    "epoch": epoch + 1,
                    "test_accuracy": ev.accuracy,
                    "test_n": ev.n,
                    "test_converged_fraction": ev.summary()["converged_fraction"],
                    "eval_seconds": round(time.perf_counter() - t0, 2),
                }
                run.metrics.write(event="epoch", **last)
                bar.write(f"epoch {epoch + 1}: test accuracy {ev.accuracy:.4f} on {ev.n} images", file=sys.stderr)
                position = Position(epoch + 1, 0)
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        raise
    bar.close()
    meta["metrics"] = last
    save_model(run.model, net, meta)
    return last
