"""``ephw bench settle``: ephw's settle step against a naive autograd reference step.

The reference computes the drive as ``torch.autograd.grad(Phi, states)`` on a copy
of the model in PyTorch's default (NCHW) layout, the way Laborieux et al.'s code
does. A second reference uses autograd on ephw's own (channels-last) model, to
separate the layout gain from the closed-form drive.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from ephw.backends import Euler, IterativeBackend, get_backend, settle
from ephw.bench.timing import time_interleaved
from ephw.checkpoint import load_model
from ephw.data import dataset_stats, load_dataset
from ephw.errors import DataError, InputError
from ephw.model import EnergyModel, States, named_config


def autograd_step(net: EnergyModel, x: Tensor, states: States) -> States:
    """Naive reference: ``s <- sigma(dPhi/ds)`` with the drive from autograd."""
    with torch.enable_grad():
        leaves = [s.detach().requires_grad_() for s in states]
        grads = torch.autograd.grad(net.phi(x, leaves).sum(), leaves)
    return [net.activation(g) for g in grads]


def _plain_layout(net: EnergyModel) -> EnergyModel:
    ref = copy.deepcopy(net)
    for conv in ref.convs:
        conv.weight.data = conv.weight.data.contiguous()
    return ref


def _model_and_images(config: str, batch: int, device: torch.device) -> tuple[EnergyModel, Tensor, str]:
    data = "digits" if config == "digits" else "cifar10"
    if config == "digits":
        net, source = load_model(device=device), "bundled trained digits model"
    else:
        torch.manual_seed(0)
        mean, std = dataset_stats(data)
        net = EnergyModel(named_config(config, input_mean=mean, input_std=std)).to(device).eval()
        source = f"randomly initialised {config} model (seed 0)"
    try:
        x, _ = load_dataset(data, "test").batch(slice(0, batch))
        source += f", {data} test images"
    except DataError:
        torch.manual_seed(1)
        x = torch.rand(batch, *net.config.in_shape)
        source += ", uniform random images (dataset not found)"
    if x.shape[0] < batch:  # digits test split is smaller than large batches
        x = x.repeat((batch + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:batch]
    return net, x.to(device), source


def _context(config: str, batch: int, device: torch.device, source: str) -> dict[str, Any]:
    """What a benchmark ran on (reported with every result)."""
    return {
        "config": config,
        "batch": batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "model": source,
    }


def bench_settle(
    config: str = "paper",
    batch: int = 64,
    *,
    repeats: int = 5,
    tol: float = 1e-4,
    max_steps: int = 2000,
    device: str = "cpu",
) -> dict[str, Any]:
    """Per-step time of ephw vs the autograd references, and steps to ``tol`` for euler vs async."""
    dev = torch.device(device)
    net, x, source = _model_and_images(config, batch, dev)
    # time steps at a realistic, non-trivial state: partway to the fixed point
    states = settle(net, x, "euler", steps=5, tol=None).states
    euler = Euler()
    plain = _plain_layout(net)
    x_plain = x.contiguous()
    states_plain = [s.contiguous() for s in states]

    def ephw_step() -> object:
        with torch.no_grad():
            return euler.step(net, x, states, 0.0, None, net.digital)

    times = time_interleaved(
        {
            "ephw": ephw_step,
            "autograd_nchw": lambda: autograd_step(plain, x_plain, states_plain),
            "autograd_same_layout": lambda: autograd_step(net, x, states),
        },
        repeats=repeats,
        device=dev,
    )
    check = max(float((a - b).abs().max()) for a, b in zip(ephw_step()[0], autograd_step(plain, x_plain, states_plain)))
    conv = {name: settle(net, x, name, steps=max_steps, tol=tol) for name in ("euler", "async")}
    steps = {name: float(r.steps_per_sample.float().mean()) for name, r in conv.items()}
    return {
        **_context(config, batch, dev, source),
        "step_seconds_ephw": times["ephw"],
        "step_seconds_autograd": times["autograd_nchw"],
        "step_seconds_autograd_same_layout": times["autograd_same_layout"],
        "speedup_vs_autograd": times["autograd_nchw"] / times["ephw"],
        "speedup_vs_autograd_same_layout": times["autograd_same_layout"] / times["ephw"],
        "max_abs_drive_diff": check,
        "tol": tol,
        "euler_steps_mean": steps["euler"],
        "async_steps_mean": steps["async"],
        "async_over_euler_steps": steps["async"] / steps["euler"],
        "euler_converged_fraction": conv["euler"].converged_fraction,
        "async_converged_fraction": conv["async"].converged_fraction,
    }


def bench_backend_steps(
    backends: list[str],
    config: str = "digits",
    batch: int = 64,
    *,
    repeats: int = 5,
    device: str = "cpu",
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per-step time of each backend's update, and its ratio to the first backend's, in one run.

    Every backend steps from the same states (partway to the fixed point); hardware
    backends program their chip before timing starts. Backends with a ``step_seconds``
    method (lava) time themselves: seconds per timestep of a chunk run on an already
    built and started network, the same batch, so the ratio is per image-step.
    """
    options = options or {}
    dev = torch.device(device)
    net, x, source = _model_and_images(config, batch, dev)
    states = settle(net, x, "euler", steps=5, tol=None).states
    impls = {name: get_backend(name, **options.get(name, {})) for name in backends}
    fns = {}
    for name, impl in impls.items():
        if hasattr(impl, "step_seconds"):  # times its own steps (lava: run(k)/k on a built network)
            continue
        if not isinstance(impl, IterativeBackend):
            raise InputError(f"bench: backend {name!r} has no single-step update to time")
        ops = impl.synapses(net)

        def step(impl: IterativeBackend = impl, ops: Any = ops) -> object:
            with torch.no_grad():
                return impl.step(net, x, states, 0.0, None, ops)

        fns[name] = step
    times = time_interleaved(fns, repeats=repeats, device=dev) if fns else {}
    for name, impl in impls.items():
        if name not in times:
            try:
                times[name] = impl.step_seconds(net, x, repeats=repeats)
            finally:
                close = getattr(impl, "close", None)
                if close is not None:
                    close()
    first = backends[0]
    return {
        **_context(config, batch, dev, source),
        "reference": first,
        "rows": [
            {
                "backend": name,
                "step_seconds": times[name],
                "step_ms": times[name] * 1e3,
                "ratio_to_reference": times[name] / times[first],
            }
            for name in backends
        ],
    }
