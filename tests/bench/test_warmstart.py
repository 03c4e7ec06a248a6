"""``ephw bench warmstart`` on a quickly distilled student of the bundled model."""

from __future__ import annotations

import json

import pytest

from ephw.bench.warmstart import bench_warmstart
from ephw.cli.main import main
from ephw.distill.trainer import DistillSettings, distill
from ephw.errors import InputError


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    for kind in ("cnn", "resnet18"):
        distill(
            DistillSettings(
                student=kind,
                width=4,
                epochs=3 if kind == "cnn" else 1,
                max_batches=None if kind == "cnn" else 2,
                cache_teacher=True,
                test_n=64,
                timing_batch=16,
                timing_repeats=1,
                out=str(root / kind),
                progress=False,
            )
        )
    return root


def test_warmstart_reports_both_step_counts_and_fixed_point_agreement(students, capsys):
    assert main(["bench", "warmstart", "--student", str(students / "cnn" / "model.pt"), "--n", "128", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["backend"] == "async" and r["n"] == 128  # the student's teacher backend by default
    assert r["cold_steps_mean"] > 5 and r["warm_steps_mean"] > 1
    assert r["cold_converged_fraction"] == 1.0 and r["warm_converged_fraction"] == 1.0
    assert r["prediction_agreement"] >= 0.95
    # the teacher is multistable: some warm starts end in another basin (docs/distillation.md)
    assert 0 <= r["samples_differing"] <= r["n"]
    assert r["differ_above"] == 1e-4 and (r["samples_differing"] > 0) == (r["max_abs_state_diff"] > 1e-4)
    assert r["student_init_mean_abs_diff"] < 0.2  # the student starts near the fixed point
    assert main(["bench", "warmstart", "--student", str(students / "cnn" / "model.pt"), "--backend", "euler"]) == 0
    assert "steps to tol" in capsys.readouterr().out


def test_warmstart_needs_an_ep_topology_student(students):
    with pytest.raises(InputError, match="EP-topology"):
        bench_warmstart(students / "resnet18" / "model.pt", n=8)


def test_warmstart_runs_out_of_the_box_with_the_bundled_student(capsys):
    assert main(["bench", "warmstart", "--n", "32", "--backend", "sor", "--repeats", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["student"].endswith("digits-distilled.pt") and r["backend"] == "sor"
    assert r["warm_converged_fraction"] == 1.0 and r["warm_steps_mean"] < r["cold_steps_mean"]


def test_warmstart_noise_probe_needs_fewer_steps_closer_to_the_fixed_point(capsys):
    argv = ["bench", "warmstart", "--n", "32", "--backend", "anderson", "--repeats", "1", "--tol", "1e-4"]
    assert main([*argv, "--noise", "0.3,1e-4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    far, near = r["noise_probe"]
    assert far["eps"] == 0.3 and near["eps"] == 1e-4 and near["samples_differing"] == 0
    assert near["steps_mean"] < far["steps_mean"] and near["over_cold_steps"] < 0.5
    assert 0.0 < r["student_init_sample_max_abs_diff_median"] <= 1.0
    assert r["warm_over_cold_steps_same_basin"] > 0
