"""Settling a whole dataset in batches, with the summary numbers the CLI reports."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ephw import distributed
from ephw.backends import Backend, get_backend, settle
from ephw.backends.settle import DEFAULT_STEPS, DEFAULT_TOL
from ephw.data import ImageSet
from ephw.errors import InputError
from ephw.model import EnergyModel, States


@dataclass
class DatasetSettle:
    """Per-sample outcome of settling ``n`` images, concatenated over batches."""

    backend: str
    predictions: Tensor  # (n,)
    labels: Tensor  # (n,)
    steps_per_sample: Tensor  # (n,)
    converged: Tensor | None  # (n,) bool
    image_steps: int  # sum over batches of batch size x steps run
    seconds: float
    states: States | None = None  # concatenated final states, if kept
    residuals: list[Tensor] = field(default_factory=list)  # per batch, (steps, B)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).float().mean())

    def summary(self) -> dict[str, Any]:
        """The numbers ``ephw settle --json`` prints."""
        return {
            "backend": self.backend,
            "n": self.n,
            "accuracy": round(self.accuracy, 6),
            "steps_mean": round(float(self.steps_per_sample.float().mean()), 3),
            "steps_max": int(self.steps_per_sample.max()),
            "converged_fraction": None if self.converged is None else round(float(self.converged.float().mean()), 6),
            "seconds": round(self.seconds, 4),
            "image_steps_per_second": round(self.image_steps / max(self.seconds, 1e-12), 1),
        }


def settle_dataset(
    net: EnergyModel,
    data: ImageSet,
    backend: str | Backend = "euler",
    *,
    steps: int,
    tol: float | None,
    batch_size: int = 256,
    keep_states: bool = False,
    progress: bool | None = False,
    **options: Any,
) -> DatasetSettle:
    """Settle every image of ``data`` (free phase) and collect predictions and convergence.

    Under torchrun each rank settles its contiguous shard of ``data`` and every rank returns
    the gathered whole (``seconds``: the slowest rank's; ``image_steps``: the sum).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
    param = next(net.parameters())
    preds, steps_ps, conv, residuals = [], [], [], []
    kept: list[States] = []
    image_steps = 0
    impl = get_backend(backend, **options)  # one instance: a hardware backend programs its chip once
    if not isinstance(backend, Backend):
        impl = distributed.rank_backend(impl)  # same chip on every rank, read noise of its own
    part = distributed.shard(len(data))
    bar = tqdm(  # progress: True/False, None = when stderr is a terminal
        total=part.stop - part.start,
        desc=f"settling on {impl.name}",
        unit="img",
        file=sys.stderr,
        disable=(None if progress is None else not progress) if distributed.is_main() else True,
        leave=False,
    )
    start = time.perf_counter()
    for lo in range(part.start, part.stop, batch_size):
        x, _ = data.batch(slice(lo, min(lo + batch_size, part.stop)))
        res = settle(net, x.to(param.device, param.dtype), impl, steps=steps, tol=tol)
        preds.append(res.predictions.cpu())
        bar.update(x.shape[0])
        bar.refresh()  # per batch: a batch can take seconds (lava), and tqdm's rate limit would hide the last one
        steps_ps.append(res.steps_per_sample)
        residuals.append(res.residuals)
        if res.converged is not None:
            conv.append(res.converged)
        image_steps += int(res.steps_per_sample.sum())  # frozen samples cost nothing
        if keep_states:
            kept.append([s.cpu() for s in res.states])
    seconds = time.perf_counter() - start
    bar.close()
    states = [torch.cat(layer) for layer in zip(*kept)] if keep_states else None
    out = DatasetSettle(
        backend=impl.name,
        predictions=torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64),
        labels=data.labels.clone(),
        steps_per_sample=torch.cat(steps_ps) if steps_ps else torch.zeros(0, dtype=torch.int64),
        converged=torch.cat(conv) if conv else None,
        image_steps=image_steps,
        seconds=seconds,
        states=states,
        residuals=residuals,
    )
    return _gathered(out) if distributed.world().size > 1 else out


def _gathered(local: DatasetSettle) -> DatasetSettle:
    """The whole dataset's :class:`DatasetSettle` from every rank's shard (rank order = data order)."""
    shards = distributed.gather_objects(
        (local.predictions, local.steps_per_sample, local.converged, local.states, local.residuals)
    )
    conv = [c for _, _, c, _, _ in shards if c is not None]
    kept = [s for _, _, _, s, _ in shards if s]
    return DatasetSettle(
        backend=local.backend,
        predictions=torch.cat([p for p, _, _, _, _ in shards]),
        labels=local.labels,
        steps_per_sample=torch.cat([s for _, s, _, _, _ in shards]),
        converged=torch.cat(conv) if conv else None,
        image_steps=int(distributed.all_sum([local.image_steps])[0]),
        seconds=distributed.all_max(local.seconds),
        states=[torch.cat(layer) for layer in zip(*kept)] if local.states is not None else None,
        residuals=[r for _, _, _, _, res in shards for r in res],
    )


#: What ``ephw settle`` does without options: the digital ``euler`` settle in batches of 256.
DEFAULT_BACKEND = "euler"
DEFAULT_BATCH = 256


def settle_row(
    net: EnergyModel,
    data: ImageSet,
    backend: str = DEFAULT_BACKEND,
    *,
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """The row ``ephw settle --json`` prints for ``data`` (its defaults are these): :meth:`DatasetSettle.summary`
    and the images per class."""
    run = settle_dataset(net, data, backend, steps=steps, tol=tol, batch_size=batch_size)
    return {**run.summary(), "class_counts": data.class_counts()}
