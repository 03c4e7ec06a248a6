"""``ephw bench settle``: ephw's steps and solvers against a naive autograd reference.

The reference computes the drive as ``torch.autograd.grad(Phi, states)`` on a copy
of the model in PyTorch's default (NCHW) layout, the way Laborieux et al.'s code
does. A second reference uses autograd on ephw's own (channels-last) model, to
separate the layout gain from the closed-form drive.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ephw.backends import Async, Euler, IterativeBackend, get_backend, settle
from ephw.timing import time_interleaved
from ephw.checkpoint import load_checkpoint
from ephw.loading import load_model
from ephw.compare import sample_differences
from ephw.data import dataset_stats, load_dataset
from ephw.errors import DataError, InputError
from ephw.model import EnergyModel, States, named_config


def autograd_step(net: EnergyModel, x: Tensor, states: States) -> States:
    """Naive reference: ``s <- sigma(dPhi/ds)`` with the drive from autograd."""
    with torch.enable_grad():
        leaves = [s.detach().requires_grad_() for s in states]
        grads = torch.autograd.grad(net.phi(x, leaves).sum(), leaves)
    return [net.activation(g) for g in grads]


def plain_layout(net: EnergyModel) -> EnergyModel:
    ref = copy.deepcopy(net)
    for conv in ref.convs:
        conv.weight.data = conv.weight.data.contiguous()
    return ref


def model_and_images(
    config: str, batch: int, device: torch.device, model: str | None = None
) -> tuple[EnergyModel, Tensor, str]:
    """The model a bench runs on (``model``: a checkpoint or shipped name; else by ``config``), ``batch`` images."""
    data = "digits" if config == "digits" else "cifar10"
    if model is not None:
        ckpt = load_checkpoint(model)
        net, data = ckpt.model(device=device).eval(), ckpt.meta.get("data", data)
        source = f"checkpoint {model} ({net.config.name})"
    elif config == "digits":
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


def bench_context(config: str, batch: int, device: torch.device, source: str) -> dict[str, Any]:
    """What a benchmark ran on (reported with every result)."""
    return {
        "config": config,
        "batch": batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "model": source,
    }


#: the solvers ``ephw bench settle`` times to ``tol`` by default (every digital iterative backend)
SOLVERS = ("euler", "async", "sor", "asor", "anderson")


def bench_settle(
    config: str = "paper",
    batch: int = 64,
    *,
    repeats: int = 5,
    tol: float = 1e-4,
    max_steps: int = 2000,
    device: str = "cpu",
    solvers: tuple[str, ...] = SOLVERS,
    dtypes: tuple[str, ...] = ("bfloat16",),
    reference_steps: int = 250,
    overhead_steps: int = 20,
    settle_repeats: int = 1,
    differ_above: float | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Step costs and time to ``tol`` of every solver, against an autograd reference, in one run.

    ``options``: per solver name, its constructor options (``--set sor.omega=1.6``), named in its row.

    Step costs (medians of ``repeats`` interleaved calls, at states 5 euler steps from zero):
    ephw's euler step, an async sweep in the settle loop's steady state (cached terms), and the
    autograd reference step (NCHW, Laborieux's drive). Settle-loop overhead: ``settle`` with
    ``overhead_steps`` steps and ``tol=1e-30`` (every piece of the loop's bookkeeping runs; only
    samples at an exact fixed point, residual 0, freeze) against the same number of bare steps
    on the same shrinking batch (:func:`bare_steps`).

    Time to ``tol``: ``settle`` per solver (and per solver with each low ``dtype``) from the
    null state, once to warm up (that run's states and steps are reported: on CPU every new
    batch size, as samples freeze, builds new oneDNN kernels once), then ``settle_repeats``
    interleaved timed runs (median; ``0``: the single run's time). ``reference_seconds`` is ``reference_steps`` x the
    reference step (Laborieux's fixed free phase). Fixed points are compared with ``async``'s:
    ``samples_differing`` ended more than ``differ_above`` apart (another basin, docs/physics.md;
    default ``max(1e-4, 100 tol)``, as two settles to ``tol`` of one fixed point differ by up
    to ~30 tol), ``max_abs_diff_same_basin`` is the largest difference over the others.
    """
    differ_above = max(1e-4, 100 * tol) if differ_above is None else differ_above
    dev = torch.device(device)
    net, x, source = model_and_images(config, batch, dev)
    # time steps at a realistic, non-trivial state: partway to the fixed point
    states = settle(net, x, "euler", steps=5, tol=None).states
    euler, sweep = Euler(), Async()
    plain = plain_layout(net)
    x_plain = x.contiguous()
    states_plain = [s.contiguous() for s in states]
    ops = net.digital
    carry = sweep.start(net, x, states, 0.0, None, ops)

    def euler_step() -> object:
        with torch.no_grad():
            return euler.step(net, x, states, 0.0, None, ops)

    def async_sweep() -> object:  # steady state: each call recomputes the terms one sweep stales
        with torch.no_grad():
            return sweep.advance(net, x, states, 0.0, None, ops, carry)

    # the settles whose loop overhead is measured, and the bare steps they contain
    probes = {name: settle(net, x, name, steps=overhead_steps, tol=1e-30) for name in ("euler", "async")}
    times = time_interleaved(
        {
            "euler_step": euler_step,
            "async_sweep": async_sweep,
            "euler_settle": lambda: settle(net, x, "euler", steps=overhead_steps, tol=1e-30),
            "async_settle": lambda: settle(net, x, "async", steps=overhead_steps, tol=1e-30),
            "euler_bare": bare_steps(net, x, states, euler, probes["euler"].steps_per_sample),
            "async_bare": bare_steps(net, x, states, sweep, probes["async"].steps_per_sample),
            "autograd_nchw": lambda: autograd_step(plain, x_plain, states_plain),
            "autograd_same_layout": lambda: autograd_step(net, x, states),
        },
        repeats=repeats,
        device=dev,
    )
    check = max(
        float((a - b).abs().max()) for a, b in zip(euler_step()[0], autograd_step(plain, x_plain, states_plain))
    )
    ref_seconds = reference_steps * times["autograd_nchw"]
    runs = [(name, None) for name in solvers] + [(name, dt) for dt in dtypes for name in solvers if name != "euler"]
    options = options or {}
    results = {key: _settler(net, x, key, max_steps, tol, options)() for key in runs}
    if settle_repeats > 0:
        settle_times = time_interleaved(
            {key: _settler(net, x, key, max_steps, tol, options) for key in runs},
            repeats=settle_repeats,
            warmup=0,
            device=dev,
        )
    else:  # no warm-up: the single run's own time
        settle_times = {key: r.seconds for key, r in results.items()}
    base = results.get(("async", None))
    rows = []
    for (name, dt), r in results.items():
        row = {
            "solver": r.backend + "".join(f" {k}={v}" for k, v in sorted(options.get(name, {}).items())),
            "steps_mean": float(r.steps_per_sample.float().mean()),
            "steps_max": int(r.steps_per_sample.max()),
            "converged_fraction": r.converged_fraction,
            "seconds": settle_times[(name, dt)],
            "over_reference": settle_times[(name, dt)] / ref_seconds,
        }
        row["over_euler"] = settle_times[(name, dt)] / settle_times[("euler", None)] if "euler" in solvers else None
        row["over_async"] = settle_times[(name, dt)] / settle_times[("async", None)] if base is not None else None
        if base is not None:
            d = sample_differences(r.states, base.states)
            same = d[d <= differ_above]
            row["samples_differing"] = int((d > differ_above).sum())
            row["fraction_differing"] = row["samples_differing"] / batch
            row["max_abs_diff_same_basin"] = float(same.max()) if same.numel() else None
        rows.append(row)
    return {
        **bench_context(config, batch, dev, source),
        "tol": tol,
        "step_seconds_ephw": times["euler_step"],
        "step_seconds_async_sweep": times["async_sweep"],
        "async_sweep_over_euler_step": times["async_sweep"] / times["euler_step"],
        "settle_step_seconds_euler": times["euler_settle"] / probes["euler"].steps,
        "settle_step_seconds_async": times["async_settle"] / probes["async"].steps,
        "settle_overhead_euler": times["euler_settle"] / times["euler_bare"] - 1.0,
        "settle_overhead_async": times["async_settle"] / times["async_bare"] - 1.0,
        "overhead_steps": overhead_steps,
        "overhead_image_steps": {k: int(p.steps_per_sample.sum()) for k, p in probes.items()},
        "step_seconds_autograd": times["autograd_nchw"],
        "step_seconds_autograd_same_layout": times["autograd_same_layout"],
        "speedup_vs_autograd": times["autograd_nchw"] / times["euler_step"],
        "speedup_vs_autograd_same_layout": times["autograd_same_layout"] / times["euler_step"],
        "max_abs_drive_diff": check,
        "reference_steps": reference_steps,
        "reference_seconds": ref_seconds,
        "differ_above": differ_above,
        "rows": rows,
    }


def bare_steps(
    net: EnergyModel, x: Tensor, states: States, impl: IterativeBackend, steps_per_sample: Tensor
) -> Callable[[], None]:
    """The bare steps a settle ran: step ``k`` on as many samples as were still active then.

    ``steps_per_sample`` ``(B,)`` from that settle; a sample counts at steps ``0 .. n - 1``.
    Each batch size steps from its own slice of ``states`` with its own carry (steady state:
    cached terms stay cached), so this is the work of the loop without its bookkeeping.
    """
    ops = impl.synapses(net)
    counts = [int((steps_per_sample > k).sum()) for k in range(int(steps_per_sample.max()))]
    calls = {}
    for n in sorted(set(counts)):
        xn, sn = x[:n], [s[:n] for s in states]
        calls[n] = (xn, sn, impl.start(net, xn, sn, 0.0, None, ops))

    def run() -> None:
        with torch.no_grad():
            for n in counts:
                xn, sn, carry = calls[n]
                impl.advance(net, xn, sn, 0.0, None, ops, carry)

    return run


def _settler(
    net: EnergyModel, x: Tensor, key: tuple[str, str | None], steps: int, tol: float, options: dict[str, dict[str, Any]]
) -> Any:
    return lambda: settle(net, x, key[0], steps=steps, tol=tol, dtype=key[1], **options.get(key[0], {}))


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
    net, x, source = model_and_images(config, batch, dev)
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
        **bench_context(config, batch, dev, source),
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
