"""Interleaved timing of competing functions (robust on a shared, noisy machine)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1, device: torch.device | None = None
) -> dict[str, float]:
    """Median seconds per call of each function, alternating calls so that machine noise hits all alike."""
    return {name: statistics.median(ts) for name, ts in time_rounds(fns, repeats, warmup, device).items()}


def time_rounds(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds of every call, ``repeats`` rounds that call each function once in turn (after ``warmup`` rounds).

    The ``k``-th entries of two functions were measured in the same round, so their ratio per
    round shows how much the machine's noise moved the ratio. Each round calls the functions in
    its own order (a permutation seeded by ``seed`` and the round), so no function always runs
    right after the same neighbour: a large settle leaves the caches cold for whatever comes next.
    """
    device = device or torch.device("cpu")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for k in range(repeats):
        random.Random(seed * 1_000_003 + k).shuffle(order)
        for name, fn in order:
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times
