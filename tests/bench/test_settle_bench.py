"""The benchmark's naive reference step computes the same update as ephw's step."""

from __future__ import annotations

import torch

from ephw.backends import Euler
from ephw.bench.settle_bench import autograd_step
from ephw.bench.timing import time_interleaved


def test_reference_step_matches_ephw_step(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    states = [torch.rand(x.shape[0], *s, dtype=torch.float64) for s in net.state_shapes()]
    with torch.no_grad():
        ours, _ = Euler().step(net, x, states, 0.0, None, net.digital)
    for a, b in zip(ours, autograd_step(net, x, states)):
        assert torch.allclose(a, b, atol=1e-12)


def test_time_interleaved_reports_every_function():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    assert calls == ["a", "b"] * 4  # warm-up round, then alternating
