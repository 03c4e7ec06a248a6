"""The Loihi estimate from activity counts, and ``ephw settle --report --delta-threshold``."""

from __future__ import annotations

import json
from importlib.util import find_spec

import numpy as np
import pytest

from ephw.cli.main import main
from ephw.lava.activity import Activity
from ephw.lava.loihi_cost import LoihiFigures, estimate


def test_estimate_adds_up_the_published_per_operation_figures():
    # two images, three timesteps; the second froze after two
    messages = np.array([[10.0, 4.0], [5.0, 2.0], [1.0, 9.0]])
    synops = messages * 100
    act = Activity.from_rows(messages, synops, np.array([3, 2]), neurons=50, threshold=0.0)
    assert act.messages[2, 1] == 0 and act.per_image()["messages"] == (16 + 6) / 2
    f = LoihiFigures()
    est = estimate(act, cores=2, figures=f)
    e0 = 1600 * 23.6e-12 + 16 * (1.7e-12 + 81e-12) + (150 - 16) * 52e-12
    e1 = 600 * 23.6e-12 + 6 * (1.7e-12 + 81e-12) + (100 - 6) * 52e-12
    assert est.joules_per_image == pytest.approx((e0 + e1) / 2)
    t0 = (1600 * 3.5e-9 + 16 * 8.4e-9 + 134 * 5.3e-9) / 2 + 3 * 113e-9
    t1 = (600 * 3.5e-9 + 6 * 8.4e-9 + 94 * 5.3e-9) / 2 + 2 * 113e-9
    assert est.seconds_per_image == pytest.approx((t0 + t1) / 2)
    assert est.seconds_per_image_loihi2_bound == pytest.approx(est.seconds_per_image / 10)
    assert est.estimate and all("Davies" in v or "Loihi 2" in v for v in est.figures.values())


@pytest.mark.skipif(find_spec("lava") is None, reason="lava-nc not installed")
def test_settle_report_prints_activity_and_the_loihi_estimate(capsys):
    argv = ["settle", "--backend", "lava", "--n", "16", "--batch", "16", "--report", "--json"]
    assert main([*argv, "--delta-threshold", "0.01"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rep = row["loihi"]
    assert rep["delta_threshold"] == 0.01
    per = rep["per_image"]
    assert per["messages"] > 0 and per["synops"] > per["messages"]
    assert per["timesteps"] == pytest.approx(row["steps_mean"], abs=1e-3)
    assert rep["loihi_estimate"]["joules_per_image"] > 0 and rep["cpu_euler"]["seconds_per_image"] > 0
    assert rep["cpu_student"]["macs_per_image"] > 0
    assert rep["decay"][-1]["messages"] < rep["decay"][0]["messages"]


def test_delta_threshold_needs_a_lava_backend(capsys):
    assert main(["settle", "--backend", "euler", "--n", "4", "--delta-threshold", "0.01"]) == 2
    assert "--delta-threshold applies to the lava backends only" in capsys.readouterr().err
