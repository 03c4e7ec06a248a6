"""Data parallelism on ``torch.distributed``: everything ephw does with a process group, in one place.

Under ``torchrun --nproc-per-node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m ephw ...``
(or any launcher that sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``,
e.g. ``srun``), :func:`setup` joins the process group (gloo on the CPU, nccl on CUDA), pins
one GPU per local rank and sets the torch threads per rank. Without those variables every
function here is the single-process identity, so no caller needs a special case.

What the rest of ephw uses:

- :func:`shard` -- a rank's contiguous part of a batch (or of a dataset): ``n // W`` items,
  one more on the first ``n % W`` ranks, so a ragged batch is split too;
- :func:`reduce_gradients` -- the gradient of the *global* batch on every rank: each rank's
  mean-over-its-shard gradient weighted by ``n_local / n_global``, summed with one
  ``all_reduce``; N ranks x B/N images then give 1 rank x B images (up to float rounding),
  for EP's two-phase estimate and ``loss.backward()`` alike;
- :func:`reduce_logs`, :func:`gather_rows`, :func:`all_sum` -- reductions for logs and
  evaluations;
- :func:`is_main` -- rank 0, the only rank that writes run files and shows progress bars;
- :func:`rank_read_seed` -- a per-rank read-noise seed for hardware backends (the chip
  itself, ``chip_seed``, is the same on every rank).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ephw.errors import BackendError, ConfigError, InputError
from ephw.seeds import derive_seed
from ephw.signals import die_with_parent

#: Seconds a collective may wait for the other ranks before the run fails (a dead rank).
TIMEOUT_S = 1800


class RankError(ConfigError):
    """A configuration error of this rank alone (its GPU, its host): every rank reports its own."""


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its host."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1


def launched() -> bool:
    """Whether a launcher (torchrun, srun wrapper) started this process as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as the launcher set it (``RANK``; 0 when not launched), known before any group is up."""
    try:
        return int(os.environ.get("RANK", "0")) if launched() else 0
    except ValueError:
        return 0


#: The device :func:`setup` will join the process group for, on the first call that needs the group.
_pending: dict[str, str] = {}


def world() -> World:
    """This process's :class:`World` (one rank of one when no process group is up).

    After :func:`setup` the first call joins the process group: a command refused by its own
    validation before it needs the group never starts one.
    """
    if _pending and launched() and not dist.is_initialized():
        init(_pending.pop("device"))
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    size = dist.get_world_size()
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    return World(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", 0)), local_size)


def is_main() -> bool:
    """Rank 0 (or the only process): the rank that writes checkpoints, metrics and progress bars."""
    return world().rank == 0


def threads_per_rank(local_size: int) -> int:
    """Torch intra-op threads of one rank: ``OMP_NUM_THREADS`` if set, else the host's cores / ranks on it."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"OMP_NUM_THREADS must be an integer, got {env!r}") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_size))


def rank_device(device: str) -> str:
    """``device`` for this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per local rank)."""
    dev = torch.device(device)
    if dev.type != "cuda" or not launched():
        return device
    if dev.index is not None:
        raise ConfigError(f"--device {device}: under torchrun pass --device cuda, each rank takes cuda:LOCAL_RANK")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise RankError(f"local rank {local} has no GPU: {torch.cuda.device_count()} visible on this host")
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def init(device: str = "cpu") -> World:
    """Join the process group the environment describes (no-op without ``WORLD_SIZE > 1`` or when joined).

    gloo for ``device`` ``cpu``, nccl for ``cuda``. Sets torch's threads (:func:`threads_per_rank`).
    """
    _pending.clear()
    if not launched() or dist.is_initialized():
        return world()
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"WORLD_SIZE is set but {var} is not: launch with torchrun (see docs/distributed.md)")
    torch.set_num_threads(threads_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))))
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    return world()


TEARDOWN_WAIT_S = 120  # how long a finished rank waits at exit for the others (gloo)


def teardown(finished: bool = True) -> None:
    """Leave the process group (if joined).

    ``finished``: this rank ended normally, so it first waits for every other rank (a gloo
    rank that destroys its group while a peer's last collective is in flight can abort at
    exit with "terminate called without an active exception"). The wait is bounded on gloo
    (``monitored_barrier``): a peer that died costs ``TEARDOWN_WAIT_S``, not a hang. A rank
    that failed leaves at once.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if finished and dist.get_world_size() > 1:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=TEARDOWN_WAIT_S))
            else:
                dist.barrier()
    except RuntimeError as exc:  # a peer is gone: say so and leave anyway
        print(f"ephw: rank {dist.get_rank()} left without its peers: {str(exc).splitlines()[0]}", file=sys.stderr)
    finally:
        dist.destroy_process_group()


def setup(args: Any) -> None:
    """CLI hook: pin ``args.device`` to this rank's GPU, silence stdout on ranks > 0, join the group when needed.

    Ranks > 0 print nothing on stdout (every rank computes the same reduced results; rank 0
    prints them once); errors reach stderr from every rank, except the configuration errors
    every rank hits alike (:func:`quiet_error`). The process group is joined on the first
    :func:`world` call, so what a command validates before it needs the group fails before
    any group exists. Under torchrun the rank also dies with its launcher
    (:func:`~ephw.signals.die_with_parent`): a SIGKILLed torchrun leaves no worker running on,
    holding its run lock.
    """
    if not launched():
        return
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun's workers: their parent is the launcher itself
        die_with_parent()
    if env_rank() > 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- for the process's lifetime
    torch.set_num_threads(threads_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))))
    if getattr(args, "device", None) is not None:
        args.device = rank_device(args.device)  # before nccl starts: one GPU per local rank
    _pending["device"] = getattr(args, "device", None) or "cpu"


def quiet_error(exc: BaseException) -> bool:
    """Whether this rank keeps ``exc`` to itself: a rank > 0 of a launched run, on a configuration
    error (bad option, bad config file: :class:`ConfigError`, :class:`BackendError`,
    :class:`InputError`) that every rank hits alike -- rank 0 reports it once. A
    :class:`RankError` and every other error (a checkpoint, the data, the disk of this host) are
    reported by each rank that meets them."""
    if env_rank() == 0 or isinstance(exc, RankError):
        return False
    return isinstance(exc, (ConfigError, BackendError, InputError))


def barrier() -> None:
    """Wait for every rank (no-op on one)."""
    if world().size > 1:
        dist.barrier()


def shard(n: int, w: World | None = None) -> slice:
    """This rank's contiguous part of ``n`` items: ``n // W`` each, one more for the first ``n % W`` ranks."""
    w = w or world()
    base, extra = divmod(n, w.size)
    lo = w.rank * base + min(w.rank, extra)
    return slice(lo, lo + base + (w.rank < extra))


#: ``(n_global, this rank's slice)`` of the batch the training loop is stepping (:func:`begin_step`).
_step_rows: tuple[int, slice] | None = None


def begin_step(n_global: int) -> slice:
    """The training loop's hook before a batch step: this rank's slice of the ``n_global`` images, remembered.

    A trainer that draws per-batch randomness (PGD's random start) draws it for the global
    batch and keeps these rows (:func:`step_rows`), so N ranks draw what one rank would.
    """
    global _step_rows
    part = shard(n_global)
    _step_rows = (n_global, part)
    return part


def step_rows(n_local: int) -> tuple[int, slice]:
    """``(n_global, slice)`` of the batch being stepped; ``(n_local, all)`` outside a loop step or on one rank."""
    if world().size == 1 or _step_rows is None or _step_rows[1].stop - _step_rows[1].start != n_local:
        return n_local, slice(0, n_local)
    return _step_rows


def _collective_device(ref: Tensor) -> torch.device:
    """Where a collective's buffer lives: the CPU for gloo, the tensor's GPU for nccl."""
    return ref.device if dist.get_backend() == "nccl" else torch.device("cpu")


def reduce_gradients(params: Iterable[nn.Parameter], n_local: int, n_global: int) -> None:
    """Turn each ``p.grad`` (the mean over this rank's ``n_local`` images) into the global batch's mean.

    ``grad <- sum_r (n_r / n_global) grad_r`` over ranks, in one flat ``all_reduce`` per dtype.
    A parameter without a gradient counts as zero (its ``p.grad`` is then set). No-op on one rank.
    """
    if world().size == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    weight = n_local / n_global
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        dev = _collective_device(group[0].grad)
        flat = torch.cat([p.grad.reshape(-1).to(dev) for p in group]).mul_(weight)
        dist.all_reduce(flat)
        for p, part in zip(group, flat.split([p.numel() for p in group])):
            p.grad.copy_(part.view_as(p.grad))


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, as DDP does each step."""
    if world().size == 1:
        return
    for buf in module.buffers():
        dev = _collective_device(buf)
        tmp = buf.detach().to(dev).clone()
        dist.broadcast(tmp, 0)
        buf.copy_(tmp)


def reduce_logs(logs: dict[str, float], n_local: int, n_global: int) -> dict[str, float]:
    """Per-batch logs (means over the shard) as means over the global batch (weighted by shard size).

    A rank with an empty shard (a last batch smaller than the world) passes ``{}``.
    """
    if world().size == 1:
        return logs
    out: dict[str, float] = {}
    for rank_logs, n in gather_objects((logs, n_local)):
        for k, v in rank_logs.items():
            out[k] = out.get(k, 0.0) + float(v) * n / n_global
    return dict(sorted(out.items()))


def finish_step(model: nn.Module, logs: dict[str, float], n_local: int, n_global: int) -> dict[str, float]:
    """After a rank's batch step on its ``n_local`` of ``n_global`` images: the global batch's gradients and logs.

    Gradients by :func:`reduce_gradients` (shard-size weighted ``all_reduce``), buffers from
    rank 0 (:func:`broadcast_buffers`), logs by :func:`reduce_logs`. Identity on one rank.
    """
    if world().size == 1:
        return logs
    reduce_gradients(model.parameters(), n_local, n_global)
    broadcast_buffers(model)
    return reduce_logs(logs, n_local, n_global)


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if world().size == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: float) -> float:
    """The largest ``value`` over ranks."""
    if world().size == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def gather_rows(t: Tensor) -> Tensor:
    """Concatenate every rank's ``t (n_r, ...)`` along dim 0 in rank order (sizes may differ); every rank gets it.

    The result is on ``t``'s device. Ranks must agree on ``t``'s trailing shape and dtype.
    """
    w = world()
    if w.size == 1:
        return t
    if t.dtype == torch.bool:  # gloo gathers no bools
        return gather_rows(t.to(torch.uint8)).bool()
    dev = _collective_device(t)
    local = t.detach().to(dev).contiguous()
    sizes = torch.zeros(w.size, dtype=torch.int64, device=dev)
    sizes[w.rank] = local.shape[0]
    dist.all_reduce(sizes)
    top = int(sizes.max())
    padded = torch.zeros((top, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(k)] for p, k in zip(parts, sizes.tolist())]).to(t.device)


def from_main(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every rank (a decision or a cache key all ranks must share)."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (small things: per-batch residual lists, rows)."""
    w = world()
    if w.size == 1:
        return [obj]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def rank_read_seed(read_seed: int) -> int:
    """This rank's read-noise seed: ``read_seed`` on rank 0 (one rank = the plain run), a derived one elsewhere."""
    rank = world().rank
    if rank == 0:
        return read_seed
    return derive_seed(read_seed, rank, 0x5EED)


def rank_backend(backend: Any) -> Any:
    """``backend`` with per-rank read noise: a backend with crossbar ``params`` gets :func:`rank_read_seed`.

    The programming draw (``chip_seed``) is untouched, so every rank holds the same chip.
    Must run before the backend programs its chip (first settle).
    """
    params = getattr(backend, "params", None)
    if world().size > 1 and params is not None and hasattr(params, "read_seed"):
        backend.params = params.replace(read_seed=rank_read_seed(params.read_seed))
    return backend


@contextlib.contextmanager
def main_only() -> Iterator[bool]:
    """``with main_only() as write:`` -- ``write`` is True on rank 0; every rank waits for it afterwards."""
    try:
        yield is_main()
    finally:
        barrier()
