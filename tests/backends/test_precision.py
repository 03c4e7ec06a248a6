"""Mixed-precision settling: ``dtype=`` on ``settle``, under autocast, and ``--dtype`` on the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from ephw.backends import settle
from ephw.loading import load_model
from ephw.cli.main import main
from ephw.data import load_dataset


def _fp32_residual(net, x, states, beta: float = 0.0, target=None) -> float:
    """``max |sigma(dPhi/ds) - s|`` of one exact fp32 async sweep from ``states``."""
    again = settle(net, x, "async", steps=1, tol=None, beta=beta, target=target, init=states)
    return float(again.residuals.max())


@pytest.mark.parametrize("backend", ["async", "anderson"])
def test_bfloat16_settle_under_autocast_meets_tol_in_fp32(net_factory, batch_factory, backend):
    net = net_factory("softmax", "laborieux").float()
    x, y = batch_factory(n=8)
    x = x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = settle(net, x, backend, steps=2000, tol=1e-5, beta=0.5, target=y, dtype="bfloat16")
    assert bool(res.converged.all()) and all(s.dtype == torch.float32 for s in res.states)
    assert _fp32_residual(net, x, res.states, 0.5, y) < 1e-5


def test_bfloat16_settle_of_the_bundled_model_meets_tol_in_fp32():
    net = load_model()
    x, _ = load_dataset("digits", "test").batch(slice(0, 32))
    res = settle(net, x, "sor", steps=1000, tol=1e-5, dtype="bfloat16")
    assert res.backend == "sor@bfloat16" and bool(res.converged.all())
    assert _fp32_residual(net, x, res.states) < 1e-5


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_settle_cli_dtype(capsys, dtype):
    code, out = _run(
        capsys, "settle", "--backend", "anderson", "--dtype", dtype, "--n", "32", "--tol", "1e-5", "--json"
    )
    row = json.loads(out)
    assert code == 0 and row["backend"] == f"anderson@{dtype}" and row["converged_fraction"] == 1.0
    assert row["accuracy"] >= 0.9


def test_compare_cli_dtype_reports_the_fp32_fixed_points(capsys):
    code, out = _run(capsys, "compare", "--backends", "async,sor", "--dtype", "bfloat16", "--n", "32", "--json")
    report = json.loads(out)
    assert code == 0 and [r["backend"] for r in report["rows"]] == ["async@bfloat16", "sor@bfloat16"]
    assert report["rows"][0]["max_abs_state_diff"] == 0.0


def test_settle_cli_float32_is_the_plain_backend(capsys):
    code, out = _run(capsys, "settle", "--backend", "async", "--dtype", "float32", "--n", "16", "--json")
    assert code == 0 and json.loads(out)["backend"] == "async"
