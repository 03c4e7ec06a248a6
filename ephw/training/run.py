"""Resumable training runs: the parts every trainer shares.

A run lives in one folder holding ``checkpoint.pt`` (resumable state, rewritten
atomically every ``checkpoint_every`` batches, before and after each end-of-epoch
evaluation), ``metrics.jsonl`` (one JSON object per line, trimmed on resume to the rows
the checkpoint had seen) and ``model.pt`` (final weights). The folder is locked
(:class:`~ephw.outputs.OutputLock`) for the run's lifetime. The
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
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ephw import distributed
from ephw.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ephw.errors import CheckpointError, ConfigError
from ephw.feedforward.checkpoint import (
    FeedForwardCheckpoint,
    read_feedforward_checkpoint,
    save_feedforward_checkpoint,
)
from ephw.model import EnergyModel
from ephw.outputs import OutputLock, append_line, ensure_dir, truncate_to


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


@dataclass(order=True)
class Position:
    """Where a run is: the next batch to train is ``batch`` of ``epoch`` (0-based)."""

    epoch: int = 0
    batch: int = 0


def row_position(row: dict[str, Any]) -> Position | None:
    """The position a ``metrics.jsonl`` row was written at (``None``: a row of no position).

    ``train`` rows carry the 1-based epoch and the batches done in it, ``epoch`` rows the
    1-based epoch they close, ``resume`` rows (:func:`resume_row`) the position resumed from,
    counted as ``train`` rows count it; a ``resume`` row without ``one_based`` (ephw before
    1-based resume rows) holds the 0-based epoch.
    """
    event = row.get("event")
    if event == "train":
        return Position(int(row["epoch"]) - 1, int(row["batch"]))
    if event == "epoch":
        return Position(int(row["epoch"]), 0)
    if event == "resume":
        return Position(int(row["epoch"]) - (1 if row.get("one_based") else 0), int(row["batch"]))
    return None


def resume_row(position: Position) -> dict[str, Any]:
    """The ``metrics.jsonl`` row of a resume at ``position``: the 1-based epoch and the batches done in it,
    as ``train`` rows count them (``one_based`` tells it from the 0-based rows of older files)."""
    return {"event": "resume", "epoch": position.epoch + 1, "batch": position.batch, "one_based": True}


class MetricsLog:
    """Append-only JSON-lines metrics file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **row: Any) -> None:
        if not distributed.is_main():  # under torchrun rank 0 alone writes run files
            return
        append_line(self.path, json.dumps({"time": round(time.time(), 3), **row}, sort_keys=True))

    def trim_to(self, position: Position) -> int:
        """Drop the rows written after ``position`` (a run killed past its last checkpoint); returns how many."""
        if not distributed.is_main():
            return 0

        def keep(line: str) -> bool:
            try:
                where = row_position(json.loads(line))
            except (ValueError, KeyError, TypeError):
                return False  # not a row this log wrote
            return where is None or where <= position

        return truncate_to(self.path, keep)


class RunDir:
    """The files of one training run.

    ``last_metrics``: the metrics of the last finished end-of-epoch evaluation (also across
    a resume), set by the training loop.
    """

    def __init__(self, out: str | Path) -> None:
        self.root = ensure_dir(out)
        self.checkpoint = self.root / "checkpoint.pt"
        self.model = self.root / "model.pt"
        self.metrics = MetricsLog(self.root / "metrics.jsonl")
        self.last_metrics: dict[str, Any] = {}

    def save_state(
        self,
        net: EnergyModel | nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        position: Position,
        settings: Any,
        meta: dict[str, Any],
        window: list[dict[str, float]] | None = None,
    ) -> None:
        """Write ``checkpoint.pt`` atomically (rank 0 only). ``window``: per-batch logs not yet averaged into a row."""
        if not distributed.is_main():
            return
        training = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": position.epoch,
            "batch": position.batch,
            "settings": json.dumps(asdict(settings), sort_keys=True),
            # added after the first CIFAR runs: a checkpoint without them means [] and {}
            "window": [dict(w) for w in window or []],
            "last_metrics": dict(self.last_metrics),
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
        diff = settings_diff(saved, settings)
        if diff:
            raise ConfigError(
                f"--resume: settings differ from the checkpointed run in {', '.join(diff)} "
                f"(saved: {', '.join(f'{k}={saved.get(k)!r}' for k in diff)})"
            )
        return ckpt, Position(int(ckpt.training["epoch"]), int(ckpt.training["batch"]))


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def settings_diff(saved: dict[str, Any], settings: Any) -> list[str]:
    """The settings (a dataclass) that differ from ``saved`` (a checkpoint's), except :data:`RESUMABLE`.

    A field the checkpoint lacks (it was added after that run started) counts as its default,
    so adding a field with a default never breaks the resumption of an older run.
    """
    current = _json(asdict(settings))
    defaults = {}
    for f in fields(settings):
        if f.default is not MISSING:
            defaults[f.name] = _json(f.default)
        elif f.default_factory is not MISSING:
            defaults[f.name] = _json(f.default_factory())
    old = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    return sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k) and k not in RESUMABLE)


#: Settings that may change between a run and its resumption (``timing_*``: distill's
#: final timing, after training).
RESUMABLE = {"resume", "checkpoint_every", "progress", "out", "device", "timing_batch", "timing_repeats"}


def run_lock(out: str | Path) -> AbstractContextManager[Any]:
    """The lock of run folder ``out`` (created if missing); ``with run_lock(s.out):`` around a whole run.

    Under torchrun rank 0 holds it for the whole group (the other ranks write nothing there). A
    run refused before it wrote anything (a validation error) leaves no folder behind.
    """
    if not distributed.is_main():
        return _rank_folder(Path(out))
    return OutputLock(out, folder=True)


@contextmanager
def _rank_folder(out: Path) -> Iterator[None]:
    """A rank > 0's view of the run folder: created if missing, removed again if the run fails while it is empty."""
    made = not out.exists()
    ensure_dir(out)
    try:
        yield
    except BaseException:
        if made:
            with suppress(OSError):  # not empty, or rank 0 removed it already
                out.rmdir()
        raise
