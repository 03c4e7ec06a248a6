"""Resumable training runs: the parts every trainer shares.

A run lives in one folder holding ``checkpoint.pt`` (resumable state, rewritten
atomically every ``checkpoint_every`` batches and at the end of each epoch),
``metrics.jsonl`` (one JSON object per line) and ``model.pt`` (final weights). The
model is an EP :class:`~ephw.model.EnergyModel` (EP checkpoint format) or an
:mod:`ephw.feedforward` model (feed-forward checkpoint format).
Batch order and augmentation are drawn from generators seeded by
``(seed, epoch, batch)``, so a resumed run sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ephw.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ephw.errors import CheckpointError, ConfigError
from ephw.feedforward.checkpoint import (
    FeedForwardCheckpoint,
    read_feedforward_checkpoint,
    save_feedforward_checkpoint,
)
from ephw.model import EnergyModel
from ephw.outputs import append_line


def seeded(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator whose seed is derived from ``seed`` and ``parts`` (epoch, batch, ...)."""
    g = torch.Generator()
    value = seed
    for p in parts:
        value = value * 1_000_003 + p
    return g.manual_seed(value % (2**63))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The shuffled index batches of one epoch (the last, partial batch is kept)."""
    perm = torch.randperm(n, generator=seeded(seed, epoch))
    return list(perm.split(batch_size))


@dataclass
class Position:
    """Where a run is: the next batch to train is ``batch`` of ``epoch`` (0-based)."""

    epoch: int = 0
    batch: int = 0


class MetricsLog:
    """Append-only JSON-lines metrics file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **row: Any) -> None:
        append_line(self.path, json.dumps({"time": round(time.time(), 3), **row}, sort_keys=True))


class RunDir:
    """The files of one training run."""

    def __init__(self, out: str | Path) -> None:
        self.root = Path(out)
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint = self.root / "checkpoint.pt"
        self.model = self.root / "model.pt"
        self.metrics = MetricsLog(self.root / "metrics.jsonl")

    def save_state(
        self,
        net: EnergyModel | nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        position: Position,
        settings: Any,
        meta: dict[str, Any],
    ) -> None:
        training = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": position.epoch,
            "batch": position.batch,
            "settings": json.dumps(asdict(settings), sort_keys=True),
        }
        if isinstance(net, EnergyModel):
            save_checkpoint(self.checkpoint, Checkpoint(net.config, net.state_dict(), meta, training))
        else:
            ckpt = FeedForwardCheckpoint(net.spec, net.state_dict(), meta, training)
            save_feedforward_checkpoint(self.checkpoint, ckpt)

    def load_state(
        self, settings: Any, feedforward: bool = False
    ) -> tuple[Checkpoint | FeedForwardCheckpoint, Position]:
        """The saved state (of a feed-forward model if ``feedforward``); refuses a run with different settings."""
        if not self.checkpoint.exists():
            raise CheckpointError(f"--resume: no checkpoint in {self.root} (expected {self.checkpoint})")
        ckpt = read_feedforward_checkpoint(self.checkpoint) if feedforward else load_checkpoint(self.checkpoint)
        if ckpt.training is None:
            raise CheckpointError(f"{self.checkpoint} holds weights only, no training state to resume")
        saved = json.loads(ckpt.training["settings"])
        current = json.loads(json.dumps(asdict(settings), sort_keys=True))
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k not in RESUMABLE)
        if diff:
            raise ConfigError(
                f"--resume: settings differ from the checkpointed run in {', '.join(diff)} "
                f"(saved: {', '.join(f'{k}={saved.get(k)!r}' for k in diff)})"
            )
        return ckpt, Position(int(ckpt.training["epoch"]), int(ckpt.training["batch"]))


#: Settings that may change between a run and its resumption.
RESUMABLE = {"resume", "checkpoint_every", "progress", "out", "device"}


def iterate_from(position: Position, epochs: int, batches_of: Any) -> Iterator[tuple[int, int, torch.Tensor, int]]:
    """Yield ``(epoch, batch, indices, n_batches)`` starting at ``position``."""
    for epoch in range(position.epoch, epochs):
        batches = batches_of(epoch)
        start = position.batch if epoch == position.epoch else 0
        for b in range(start, len(batches)):
            yield epoch, b, batches[b], len(batches)
