"""Splitting a robustness run across processes: torchrun ranks or independent jobs (``--shard K/N``).

The unit of work is a *group*: every row of one ``(model, seed)``, computed in plan order on
one process (a cascade or checklist row reads the earlier rows of its group, never another
group's). Groups go to shards by a cost estimate (:func:`task_cost`, longest first onto the
least-loaded shard), decided from the plan alone, so every process computes the same
assignment without talking to the others, and resuming with another ``N`` only moves groups.

Shard ``K`` of ``N`` appends to its own file beside the results file,
``RESULTS.shard-K-of-N.jsonl`` (:func:`shard_file`); reading a run (resume, ``report``)
merges the results file with every shard file next to it (:func:`read_merged`), keeping each
row once, so a row is skipped on resume whichever shard computed it.

A run holds :func:`lock_rows` while it computes: an unsharded run excludes every shard of the
same results file, the shards of one split (same ``N``) go side by side, each shard runs once,
and a shard of another split (other ``N``, whose groups overlap) is refused.
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ephw import distributed
from ephw.errors import ConfigError, OutputError
from ephw.outputs import OutputLock
from ephw.robustness.config import parse_effort

#: Relative cost of one settle of an energy model vs one forward pass of a feed-forward one.
EP_FACTOR = 30.0


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int


def parse_shard(text: str) -> Shard:
    """``"K/N"`` (``0 <= K < N``) as a :class:`Shard`; :class:`ConfigError` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4 .. 3/4), got {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))


def current(explicit: Shard | None = None) -> Shard | None:
    """The shard this process computes: ``explicit`` (``--shard``), else its torchrun rank, else ``None`` (all)."""
    if explicit is not None:
        if distributed.world().size > 1:
            raise ConfigError("--shard is for independent jobs; under torchrun every rank already takes its shard")
        return explicit
    w = distributed.world()
    return Shard(w.rank, w.size) if w.size > 1 else None


def shard_file(results: Path, shard: Shard) -> Path:
    """Where shard ``shard`` of the run ``results`` appends its rows."""
    return results.with_name(f"{results.name.removesuffix('.jsonl')}.shard-{shard.index}-of-{shard.count}.jsonl")


def shard_files(results: Path) -> list[Path]:
    """The shard files beside ``results`` (any ``N``), in name order."""
    stem = re.escape(results.name.removesuffix(".jsonl"))
    pattern = re.compile(rf"{stem}\.shard-\d+-of-\d+\.jsonl")
    if not results.parent.is_dir():
        return []
    return sorted(p for p in results.parent.iterdir() if pattern.fullmatch(p.name))


def lock_rows(results: Path, shard: Shard | None) -> ExitStack:
    """Lock what a run appends its rows to, for the run's lifetime (close the returned stack to release).

    Unsharded: an exclusive lock on ``results`` (``RESULTS.lock``). Shard ``K/N``: a shared lock
    on ``results`` (so no unsharded run computes the same rows meanwhile, nor starts while a shard
    runs) and an exclusive one on its shard file. A shard of another ``N`` still running is
    refused too: its groups overlap this split's. Refusals are one line each (:class:`OutputError`).
    """
    results = Path(results)
    planned = (
        [OutputLock(results)]
        if shard is None
        else [OutputLock(results, shared=True), OutputLock(shard_file(results, shard))]
    )
    held: list[OutputLock] = []
    try:
        for lock in planned:
            held.append(lock.acquire())
        other = None if shard is None else _running_split(results, shard.count)
        if other is not None:
            raise OutputError(
                f"{results} is being computed as shard {other} by another ephw run: every shard of one run "
                f"must use the same N (--shard K/{other.split('/')[1]}), or wait for it"
            )
    except BaseException:
        for lock in reversed(held):
            lock.release(discard=True)
        raise
    stack = ExitStack()
    for lock in held:
        stack.push(lock)  # its __exit__: a run that fails before writing a row leaves no lock file
    return stack


def _running_split(results: Path, count: int) -> str | None:
    """``"K/M"`` of a shard with ``M != count`` whose lock some process holds now, else ``None``."""
    stem = re.escape(results.name.removesuffix(".jsonl"))
    pattern = re.compile(rf"{stem}\.shard-(\d+)-of-(\d+)\.jsonl\.lock")
    if not results.parent.is_dir():
        return None
    for lock in sorted(results.parent.iterdir()):
        m = pattern.fullmatch(lock.name)
        if m is None or int(m.group(2)) == count:
            continue
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held exclusively: that shard is running
            return f"{m.group(1)}/{m.group(2)}"
        finally:
            os.close(fd)  # closing drops a probe lock we got
    return None


def read_merged(results: Path, read_rows: Any, dedupe: Any, repair: Path | None = None) -> list[dict[str, Any]]:
    """Rows of ``results`` and of every shard file beside it, each row key once (the first kept).

    ``read_rows(path, repair)`` and ``dedupe(rows)`` are the results file's reader and
    de-duplicator (:mod:`ephw.robustness.runner`). Only the file ``repair`` (this process's
    own) has a torn last line cut off; in the others, which other shards may be appending
    to, a torn line is just not read.
    """
    return dedupe(read_all(results, read_rows, repair))[0]


def read_all(results: Path, read_rows: Any, repair: Path | None = None) -> list[dict[str, Any]]:
    """Rows of ``results`` then of each shard file beside it, as read (duplicates kept: ``report`` names them)."""
    rows: list[dict[str, Any]] = []
    for path in [Path(results), *shard_files(Path(results))]:
        rows += read_rows(path, repair=repair is not None and path == Path(repair))
    return rows


def task_cost(task: Any, cfg: Any, ep_models: frozenset[str]) -> float:
    """A rough cost of one row: forward/backward passes of its attack, times :data:`EP_FACTOR` for EP models."""
    base = 1.0
    if task.kind == "attack":
        spec = next((a for a in cfg.attacks if a.name == task.attack), None)
        steps = getattr(spec, "steps", None) or getattr(spec, "n_queries", None) or 100
        restarts = getattr(spec, "restarts", None) or 1
        base = float(steps) * float(restarts)
        check = task.check or ""
        effort = parse_effort(check)
        if effort:
            base *= float(effort[1])
        elif check.startswith("eot:"):
            base *= float(check.split(":", 1)[1] or 1)
        elif check.startswith("transfer:") or check.startswith("warm:"):
            base *= 2.0  # the surrogate's own attack, then the replay
    elif task.kind == "zero-grad":
        base = 2.0
    return base * (EP_FACTOR if task.model in ep_models else 1.0)


def assign(tasks: list[Any], count: int, cost: Any) -> dict[tuple[str, int], int]:
    """``(model, seed) -> shard index``: groups by decreasing total ``cost(task)``, each onto the least-loaded shard."""
    totals: dict[tuple[str, int], float] = {}
    for t in tasks:
        totals[(t.model, t.seed)] = totals.get((t.model, t.seed), 0.0) + float(cost(t))
    load = [0.0] * count
    out: dict[tuple[str, int], int] = {}
    for group, c in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        k = min(range(count), key=lambda i: (load[i], i))
        out[group] = k
        load[k] += c
    return out


def select(tasks: list[Any], shard: Shard | None, cfg: Any, ep_models: frozenset[str]) -> list[Any]:
    """The tasks of ``shard`` (all of them for ``None``), in plan order."""
    if shard is None:
        return list(tasks)
    owner = assign(tasks, shard.count, lambda t: task_cost(t, cfg, ep_models))
    return [t for t in tasks if owner[(t.model, t.seed)] == shard.index]
