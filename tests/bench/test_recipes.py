"""Time-to-accuracy curves of EP runs and named recipes (ephw.bench.recipes)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import ephw.cli.train as cli_train
from ephw.bench.recipes import RECIPES, curve_of_run, plot_curves, write_curves
from ephw.cli.main import build_parser
from ephw.errors import InputError
from ephw.training.train_ep import EPTrainSettings, train_ep


def _run(tmp_path: Path, **kw) -> Path:
    s = EPTrainSettings(
        data="digits", epochs=2, batch_size=128, free_steps=6, nudge_steps=2, eval_steps=50,
        out=str(tmp_path / "run"), progress=False, max_batches=3, **kw,
    )
    train_ep(s)
    return Path(s.out)


def test_curve_counts_every_phase_sweep_of_every_image(tmp_path: Path) -> None:
    run = _run(tmp_path)
    curve = curve_of_run(run)
    assert [p.epoch for p in curve.points] == [1, 2]
    # 3 batches of 128 per epoch, 6 free + 2 x 2 nudged sweeps per image at fixed phase lengths
    assert curve.points[0].image_sweeps == 3 * 128 * (6 + 2 * 2)
    assert curve.points[1].image_sweeps == 2 * 3 * 128 * (6 + 2 * 2)
    assert curve.points[1].train_seconds > curve.points[0].train_seconds > 0


def test_positive_nudging_counts_one_nudged_phase(tmp_path: Path) -> None:
    curve = curve_of_run(_run(tmp_path, nudging="positive"))
    assert curve.points[0].image_sweeps == 3 * 128 * (6 + 2)


def test_runs_from_before_the_sweep_log_count_their_fixed_phases(tmp_path: Path) -> None:
    """Rows without image_sweeps/seconds (older runs): sweeps from the settings, no wall time."""
    run = _run(tmp_path)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    old = [{k: v for k, v in r.items() if k not in ("image_sweeps", "seconds")} for r in rows]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    curve = curve_of_run(run)
    assert curve.points[1].image_sweeps == 2 * 3 * 128 * (6 + 2 * 2)
    assert curve.points[1].train_seconds is None


def test_curves_are_written_and_plotted(tmp_path: Path) -> None:
    curve = curve_of_run(_run(tmp_path), label="tiny")
    write_curves([curve], tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())[0]["label"] == "tiny"
    assert plot_curves([curve], tmp_path / "c.png", target=0.5).stat().st_size > 0
    assert curve.first_reaching(2.0) is None


def test_a_folder_that_is_no_run_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no metrics.jsonl"):
        curve_of_run(tmp_path)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipes_flags_give_its_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ephw train ep --recipe NAME` and the recipe's explicit flags build the same run."""
    recipe = RECIPES[name]
    parser = build_parser()
    by_name = parser.parse_args(["train", "ep", "--data", "cifar10", "--recipe", name])
    by_flags = parser.parse_args(["train", "ep", "--data", "cifar10", *recipe.cli_args()])
    captured: list[EPTrainSettings] = []
    monkeypatch.setattr(cli_train, "train_ep", lambda s: captured.append(s) or {})
    cli_train.run_train_ep(by_name)
    cli_train.run_train_ep(by_flags)
    a, b = captured
    assert replace(a, out="x") == replace(b, out="x")
    assert a.free_init == recipe.free_init and a.free_steps == recipe.free_steps and a.lrs == recipe.lrs
