"""Settling a whole dataset in batches, with the summary numbers the CLI reports."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ephw.backends import Backend, get_backend, settle
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
    """Settle every image of ``data`` (free phase) and collect predictions and convergence."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
    param = next(net.parameters())
    preds, steps_ps, conv, residuals = [], [], [], []
    kept: list[States] = []
    image_steps = 0
    impl = get_backend(backend, **options)  # one instance: a hardware backend programs its chip once
    bar = tqdm(  # progress: True/False, None = when stderr is a terminal
        total=len(data),
        desc=f"settling on {impl.name}",
        unit="img",
        file=sys.stderr,
        disable=None if progress is None else not progress,
        leave=False,
    )
    start = time.perf_counter()
    for lo in range(0, len(data), batch_size):
        x, _ = data.batch(slice(lo, lo + batch_size))
        res = settle(net, x.to(param.device, param.dtype), impl, steps=steps, tol=tol)
        preds.append(res.predictions.cpu())
        bar.update(x.shape[0])
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
    return DatasetSettle(
        backend=impl.name,
        predictions=torch.cat(preds),
        labels=data.labels.clone(),
        steps_per_sample=torch.cat(steps_ps),
        converged=torch.cat(conv) if conv else None,
        image_steps=image_steps,
        seconds=seconds,
        states=states,
        residuals=residuals,
    )
