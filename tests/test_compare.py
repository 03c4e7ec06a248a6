"""Settling a dataset and comparing backends on it."""

from __future__ import annotations

import pytest
import torch

from ephw import settle
from ephw.compare import compare_backends
from ephw.data import ImageSet
from ephw.inference import settle_dataset


def tiny_set(n: int = 10) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(
        "toy", "test", torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g), ("a", "b", "c")
    )


def test_settle_dataset_concatenates_batches(net_factory):
    net = net_factory()  # float64; images are cast to the model's dtype
    data = tiny_set(10)
    whole = settle_dataset(net, data, "async", steps=500, tol=1e-6, batch_size=10, keep_states=True)
    parts = settle_dataset(net, data, "async", steps=500, tol=1e-6, batch_size=3, keep_states=True)
    assert parts.n == 10 and len(parts.residuals) == 4
    assert torch.equal(whole.predictions, parts.predictions)
    for a, b in zip(whole.states, parts.states):
        assert torch.allclose(a, b, atol=1e-6)
    s = parts.summary()
    assert s["converged_fraction"] == 1.0 and s["n"] == 10
    assert s["accuracy"] == pytest.approx(float((parts.predictions == data.labels).double().mean()))
    assert parts.image_steps == int(parts.steps_per_sample.sum())


def test_compare_reports_differences_to_reference(net_factory):
    net = net_factory()
    report, runs = compare_backends(net, tiny_set(), ["euler", "async"], steps=5000, tol=1e-10)
    ref, other = report["rows"]
    assert report["reference"] == "euler" and ref["max_abs_state_diff"] == 0.0
    per_layer = [float((a - b).abs().max()) for a, b in zip(runs[1].states, runs[0].states)]
    assert other["layer_max_abs_diff"] == per_layer and other["max_abs_state_diff"] == max(per_layer)
    agree = float((runs[1].predictions == runs[0].predictions).double().mean())
    assert other["prediction_agreement"] == pytest.approx(agree)
    assert other["steps_mean"] < ref["steps_mean"]


def test_backends_disagree_only_between_genuine_fixed_points(net_factory):
    """Where euler and async end apart, each end point is a fixed point of the other backend too.

    Max pooling makes the energy non-convex (docs/physics.md, multistability): the two
    backends may pick different minima, but never a non-stationary point.
    """
    net = net_factory()
    data = tiny_set()
    _, (e, a) = compare_backends(net, data, ["euler", "async"], steps=5000, tol=1e-10)
    x, _ = data.batch(slice(None))
    for states, other in ((e.states, "async"), (a.states, "euler")):
        moved = settle(net, x.double(), other, steps=5000, tol=1e-10, init=states)
        assert moved.steps <= 2
        for s, t in zip(states, moved.states):
            assert (s - t).abs().max() < 1e-8
