"""``ephw train ep``: train an EP-CNN with equilibrium propagation (Laborieux et al. 2021; Scellier et al. 2023)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ephw import distributed
from ephw.backends import get_backend
from ephw.backends.registry import BACKENDS
from ephw.checkpoint import save_model
from ephw.data import dataset_stats, load_dataset
from ephw.errors import ConfigError
from ephw.inference import settle_dataset
from ephw.model import EnergyModel, named_config
from ephw.training.ep import NUDGINGS, ep_step
from ephw.training.free_states import FREE_INITS, FreeStateStore
from ephw.training.loop import check_loop_settings, fit
from ephw.training.run import run_lock


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
    nudging: str = "centered"  # ephw.training.ep.NUDGINGS
    free_init: str = "zero"  # ephw.training.free_states.FREE_INITS
    free_steps: int = 40
    nudge_steps: int = 10
    tol: float | None = None
    backend: str = "async"
    backend_options: dict[str, Any] = field(default_factory=dict)  # e.g. crossbar preset/overrides
    augment: bool | None = None
    seed: int = 0
    eval_steps: int = 500
    eval_tol: float = 1e-5
    eval_n: int | None = None  # test images evaluated after each epoch (class-balanced first n; None: all)
    checkpoint_every: int = 50
    max_batches: int | None = None  # cap on batches per epoch (None: all; old checkpoints lack it = None)
    out: str = "runs/ep"
    device: str = "cpu"
    progress: bool = True
    resume: bool = False
    noise_aware: str | None = None  # PRESET[@T_SECONDS]: ephw.training.noise_aware


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


def ep_backends() -> list[str]:
    """The registered backends that settle nudged phases (``beta != 0``): a backend class with
    ``nudging = False`` settles free phases only."""
    return [name for name, cls in BACKENDS.items() if getattr(cls, "nudging", True)]


def build_model(s: EPTrainSettings, classes: int) -> EnergyModel:
    mean, std = dataset_stats(s.data)
    extra = {} if s.init_scale is None else {"init_scale": s.init_scale}
    cfg = named_config(
        s.config, classes=classes, output=s.output, activation=s.activation, input_mean=mean, input_std=std, **extra
    )
    torch.manual_seed(s.seed)
    return EnergyModel(cfg)


def check_settings(s: EPTrainSettings) -> None:
    """Refuse settings no EP run can use (before anything is loaded or written)."""
    if not (s.beta > 0 and math.isfinite(s.beta)):
        raise ConfigError(f"beta must be > 0 (EP nudges at +beta and -beta), got {s.beta}")
    if s.eval_n is not None and s.eval_n < 1:
        raise ConfigError(f"eval_n must be >= 1 (test images per evaluation), got {s.eval_n}")
    if s.free_steps < 1 or s.nudge_steps < 1 or s.eval_steps < 1:
        raise ConfigError(
            f"free_steps, nudge_steps and eval_steps must be >= 1, got {s.free_steps}, {s.nudge_steps}, {s.eval_steps}"
        )
    if s.nudging not in NUDGINGS:
        raise ConfigError(f"unknown nudging {s.nudging!r}; choose one of {', '.join(NUDGINGS)}")
    if s.free_init not in FREE_INITS:
        raise ConfigError(f"unknown free_init {s.free_init!r}; choose one of {', '.join(FREE_INITS)}")
    check_loop_settings(s)
    if s.backend in BACKENDS and s.backend not in ep_backends():
        raise ConfigError(
            f"backend {s.backend!r} settles free phases only, not EP's nudged phases; "
            f"EP training backends: {', '.join(ep_backends())}"
        )


def train_ep(s: EPTrainSettings) -> dict[str, Any]:
    """Run (or resume) EP training; returns the final metrics. Writes into ``s.out`` (locked meanwhile)."""
    check_settings(s)
    with run_lock(s.out):
        return _train_ep(s)


def _train_ep(s: EPTrainSettings) -> dict[str, Any]:
    train = load_dataset(s.data, "train", s.data_root)
    test = load_dataset(s.data, "test", s.data_root)
    net = build_model(s, len(train.classes))
    if tuple(net.config.in_shape) != train.image_shape:
        raise ConfigError(
            f"config {s.config!r} expects images {net.config.in_shape} but {s.data} has {train.image_shape}"
        )
    augment = s.augment if s.augment is not None else s.data.startswith("cifar")
    # one backend instance for the whole run: a hardware backend keeps its chip and
    # re-programs the updated weights onto it
    backend = distributed.rank_backend(get_backend(s.backend, **s.backend_options))  # same chip, own read noise
    meta = {"data": s.data, "trainer": "ep", "settings": asdict(s)}
    store = None if s.free_init == "zero" else FreeStateStore(s.free_init, net.state_shapes(), len(train))

    def step(x: Tensor, y: Tensor, idx: Tensor, epoch: int, b: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ep = ep_step(
            net,
            x,
            y,
            backend=backend,
            beta=s.beta,
            free_steps=s.free_steps,
            nudge_steps=s.nudge_steps,
            tol=s.tol,
            init=None if store is None else store.take(idx, x),
            nudging=s.nudging,
        )
        if store is not None:
            store.put(idx, ep.free.states)
        for p, g in zip(net.parameters(), ep.grads):
            p.grad = g
        phases = [r for r in (ep.free, ep.plus, ep.minus) if r is not None]
        with torch.no_grad():
            loss = float(net.loss(ep.free.states, y).mean())
            acc = float((ep.free.predictions == y).float().mean())
        return {
            "loss": loss,
            "accuracy": acc,
            "free_steps": float(ep.free.steps),
            # machine-independent cost: sweeps of every phase summed over the batch's images
            "image_sweeps": float(sum(int(r.steps_per_sample.sum()) for r in phases)),
            "seconds": time.perf_counter() - t0,  # this rank's step (phases + gradient), not the update
        }

    def evaluate(model: EnergyModel) -> dict[str, Any]:
        t0 = time.perf_counter()
        ev = settle_dataset(model, test if s.eval_n is None else test.subset(s.eval_n), backend, steps=s.eval_steps, tol=s.eval_tol, batch_size=256)
        return {
            "test_accuracy": ev.accuracy,
            "test_n": ev.n,
            "test_converged_fraction": ev.summary()["converged_fraction"],
            "eval_seconds": round(time.perf_counter() - t0, 2),
        }

    groups = [(f"layer {j}", m.parameters()) for j, m in enumerate(net.synapses)]
    run = fit(net, groups, s, train, step, evaluate, meta, augment=augment, carried=store)
    last = {"epoch": s.epochs, **run.last_metrics}
    meta["metrics"] = last
    if distributed.is_main():
        save_model(run.model, net, meta)
    return last
