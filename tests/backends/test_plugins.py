"""Backend plugins through the ``ephw.backends`` entry points: discovery, listing, failures, the README example.

Nothing is installed: the entry points are faked by monkeypatching ``importlib.metadata.entry_points``
(the registry looks them up there), and the example backend is imported from ``backends/example``.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import ephw
from ephw.backends import BACKENDS, ENTRY_POINT_GROUP, backend_info, backend_names, get_backend
from ephw.cli.main import main
from ephw.data import load_dataset
from ephw.errors import BackendError

REPO = Path(__file__).resolve().parents[2]
BUILTINS = ["euler", "async", "sor", "asor", "anderson", "crossbar", "lava", "lava-fixed"]


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, **points: str) -> None:
    """Make ``ephw.backends`` hold exactly ``points`` (``name="module:Class"``) and rediscover."""
    eps = importlib.metadata.EntryPoints(
        importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in points.items()
    )

    def entry_points(**selection: str) -> importlib.metadata.EntryPoints:
        return eps.select(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    BACKENDS.discover(refresh=True)


@pytest.fixture(autouse=True)
def real_plugins_after() -> Iterator[None]:
    """Whatever a test fakes, the registry holds the installed plugins again afterwards."""
    yield
    BACKENDS.discover(refresh=True)


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "backends" / "example"))
    fake_entry_points(monkeypatch, damped="ephw_example_backend:Damped")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_plugin_installed_leaves_the_builtins_working(monkeypatch, capsys):
    fake_entry_points(monkeypatch)
    assert backend_names() == BUILTINS
    code, out, err = run(capsys, "backends", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and err == "" and [r["name"] for r in rows] == BUILTINS
    assert {r["origin"] for r in rows} == {"built-in"} and all(r["nudging"] for r in rows)
    assert {r["version"] for r in rows} == {ephw.__version__}
    code, out, _ = run(capsys, "settle", "--backend", "euler", "--n", "16", "--json")
    assert code == 0 and json.loads(out)["backend"] == "euler"
    with pytest.raises(BackendError, match="aihwkit"):
        get_backend("aihwkit")


def test_a_broken_plugin_is_one_warning_line(monkeypatch, capsys):
    fake_entry_points(
        monkeypatch,
        broken="ephw_no_such_module_for_tests:Backend",
        notabackend="json:dumps",
        euler="ephw.backends.euler:Euler",  # takes a built-in's name
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("ephw: warning: backend plugin ") for line in err)
    assert "'broken'" in err[0] and "ModuleNotFoundError" in err[0]
    assert "'notabackend'" in err[1] and "not an ephw.backends.Backend subclass" in err[1]
    assert "'euler'" in err[2] and "already taken by built-in" in err[2]
    assert backend_names() == BUILTINS and BACKENDS["euler"].__name__ == "Euler"
    # discovered once: later reads do not warn again, and the commands run
    code, out, err = run(capsys, "backends")
    header = out.splitlines()[0].split()
    assert code == 0 and err == "" and header == ["name", "origin", "nudging", "version", "description"]
    code, out, err = run(capsys, "settle", "--backend", "euler", "--n", "16", "--json")
    assert code == 0 and err == ""


def test_exactly_one_line_for_one_broken_plugin(monkeypatch, capsys):
    fake_entry_points(monkeypatch, broken="ephw_no_such_module_for_tests:Backend")
    code, out, err = run(capsys, "backends")
    assert code == 0 and "broken" not in out
    fake_entry_points(monkeypatch, broken="ephw_no_such_module_for_tests:Backend")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "'broken'" in lines[0]


def test_example_backend_is_listed_and_settles_to_euler_fixed_points(example, capsys):
    assert backend_names() == [*BUILTINS, "damped"]
    info = {i.name: i for i in backend_info()}["damped"]
    assert info.origin == "ephw_example_backend" and info.nudging and "example" in info.description
    code, out, _ = run(capsys, "backends", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["name"] == "damped"

    net = ephw.load_model()
    x, y = load_dataset("digits", "test").subset(64).batch(slice(0, 64))
    ref = ephw.settle(net, x, "euler", tol=1e-7, steps=2000)
    res = ephw.settle(net, x, "damped", tol=1e-7, steps=2000, rate=0.7)
    assert res.backend == "damped" and res.converged.all()
    diff = max(float((a - b).abs().max()) for a, b in zip(res.states, ref.states))
    assert diff < 1e-4 and torch.equal(res.predictions, ref.predictions)
    nudged = ephw.settle(net, x, "damped", tol=1e-6, steps=2000, beta=0.5, target=y, init=res.states)
    assert nudged.converged.all() and float((nudged.states[-1] - res.states[-1]).abs().max()) > 1e-3
    # the nudge pulls the output towards the target: its loss drops
    loss = torch.nn.functional.cross_entropy
    assert loss(nudged.logits, y) < loss(res.logits, y)


def test_example_backend_options_on_the_command_line(example, capsys):
    argv = ["compare", "--backends", "euler,damped", "--n", "32", "--set", "damped.rate=0.7", "--json"]
    code, out, _ = run(capsys, *argv)
    rows = json.loads(out)["rows"]
    assert code == 0 and rows[1]["backend"] == "damped" and rows[1]["prediction_agreement"] == 1.0
    code, _, err = run(capsys, "settle", "--backend", "damped", "--n", "8", "--set", "damped.rate=2")
    assert code == 2 and err.strip() == "ephw: error: damped: rate must be in (0, 1], got 2"
    code, out, _ = run(capsys, "settle", "--backend", "all", "--n", "8", "--json")
    assert code == 0 and [json.loads(line)["backend"] for line in out.splitlines()] == [*BUILTINS, "damped"]
