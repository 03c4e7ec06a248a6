"""Interleaved timing: every function once per round, in an order that changes between rounds."""

from __future__ import annotations

from ephw.timing import time_interleaved, time_rounds


def test_every_function_runs_once_per_round_and_neighbours_change() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcdef"}
    times = time_rounds(fns, repeats=6, warmup=1)
    assert {name: len(ts) for name, ts in times.items()} == dict.fromkeys("abcdef", 6)
    rounds = [calls[i : i + 6] for i in range(6, len(calls), 6)]  # after the warm-up round
    assert all(sorted(r) == list("abcdef") for r in rounds)
    before_a = {r[r.index("a") - 1] if r.index("a") else None for r in rounds}
    assert len(before_a) > 1  # not always the same neighbour before "a"
    assert time_rounds(fns, repeats=6, warmup=0, seed=0).keys() == times.keys()


def test_the_order_is_seeded() -> None:
    def order(seed: int) -> list[str]:
        calls: list[str] = []
        time_rounds({n: (lambda n=n: calls.append(n)) for n in "abcd"}, repeats=3, warmup=0, seed=seed)
        return calls

    assert order(1) == order(1)


def test_time_interleaved_reports_the_median_of_every_function() -> None:
    times = time_interleaved({"a": lambda: None, "b": lambda: sum(range(10_000))}, repeats=3)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
