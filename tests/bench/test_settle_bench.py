"""The benchmark's naive reference step computes the same update as ephw's step."""

from __future__ import annotations

import json

import pytest
import torch

from ephw.backends import Euler
from ephw.bench.settle_bench import autograd_step


def test_reference_step_matches_ephw_step(net_factory, batch_factory):
    net = net_factory()
    x, _ = batch_factory()
    states = [torch.rand(x.shape[0], *s, dtype=torch.float64) for s in net.state_shapes()]
    with torch.no_grad():
        ours, _ = Euler().step(net, x, states, 0.0, None, net.digital)
    for a, b in zip(ours, autograd_step(net, x, states)):
        assert torch.allclose(a, b, atol=1e-12)


def test_bench_settle_reports_every_solver_against_the_reference():
    from ephw.bench.settle_bench import bench_settle

    r = bench_settle("digits", 16, repeats=1, solvers=("euler", "async", "sor"), dtypes=("bfloat16",), overhead_steps=2)
    assert [row["solver"] for row in r["rows"]] == ["euler", "async", "sor", "async@bfloat16", "sor@bfloat16"]
    assert r["reference_seconds"] == r["reference_steps"] * r["step_seconds_autograd"]
    for row in r["rows"]:
        assert row["converged_fraction"] == 1.0 and row["over_reference"] > 0
        assert 0 <= row["samples_differing"] <= 16
    assert r["rows"][1]["over_async"] == 1.0 and r["rows"][1]["samples_differing"] == 0
    assert r["async_sweep_over_euler_step"] > 0 and "settle_overhead_async" in r


def test_bench_train_compares_ep_gradients():
    from ephw.bench.train_bench import bench_train

    r = bench_train("digits", 8, solver="sor", free_steps=60, nudge_steps=30, tol=1e-4)
    assert r["ephw_converged_fraction"] == 1.0 and r["speedup"] > 0
    assert r["gradient_samples"] == 0 or r["gradient_cosine"] > 0.9


@pytest.mark.parametrize(
    "argv,match",
    [
        (["bench", "settle", "--batch", "0"], "--batch"),
        (["bench", "settle", "--batch", "-1"], "--batch"),
        (["bench", "settle", "--repeats", "0"], "--repeats"),
        (["bench", "train", "--batch", "0"], "--batch"),
        (["bench", "warmstart", "--repeats", "0"], "--repeats"),
    ],
)
def test_bench_rejects_non_positive_counts(argv, match, capsys):
    from ephw.cli.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ephw: error:") and match in err and "\n" not in err


def test_bench_train_on_a_trained_checkpoint_agrees_with_the_reference_gradient():
    from ephw.bench.train_bench import bench_train

    r = bench_train("cpu-small", 16, model="digits-ep", solver="anderson", tol=1e-4)
    assert r["model"].startswith("checkpoint digits-ep") and r["ephw_converged_fraction"] == 1.0
    # the trained digits model settles within Laborieux's 250/30 steps, so "both converged" has samples
    assert r["gradient_samples"] >= 3 and r["gradient_cosine"] > 0.99


def test_bench_settle_takes_solver_options_from_set(capsys):
    from ephw.cli.main import main

    argv = ["bench", "settle", "--config", "digits", "--batch", "8", "--repeats", "1", "--dtypes", ""]
    assert main([*argv, "--solvers", "async,sor", "--set", "sor.omega=1.4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["solver"] for r in rows] == ["async", "sor omega=1.4"]
    assert main([*argv, "--solvers", "async", "--set", "sor.omega=1.4"]) == 2  # an option for a solver not run
