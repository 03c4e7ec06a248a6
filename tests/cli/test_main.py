"""The ``ephw`` command line on the bundled digits model: outputs and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from ephw.backends import backend_names
from ephw.checkpoint import BUNDLED_MODEL
from ephw.cli.main import main

SETTLE_KEYS = {"backend", "n", "accuracy", "steps_mean", "converged_fraction", "seconds", "image_steps_per_second"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_settle_async_on_bundled_model(capsys):
    code, out, _ = run(capsys, "settle", "--backend", "async", "--json", "--n", "256")
    assert code == 0
    row = json.loads(out)
    assert SETTLE_KEYS <= set(row)
    assert row["backend"] == "async" and row["n"] == 256
    assert row["accuracy"] >= 0.95 and row["converged_fraction"] == 1.0


def test_settle_all_backends(capsys):
    code, out, _ = run(capsys, "settle", "--backend", "all", "--json", "--n", "64")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["backend"] for r in rows] == backend_names()
    code, out, _ = run(capsys, "settle", "--backend", "euler", "--n", "32", "--set", "euler.dt=0.5")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["backend", "n", "accuracy"]


def test_compare_euler_async(capsys):
    code, out, _ = run(capsys, "compare", "--backends", "euler,async", "--json")
    report = json.loads(out)
    assert code == 0 and report["reference"] == "euler"
    euler, asyn = report["rows"]
    assert {"backend", "accuracy", "steps_mean", "seconds", "max_abs_state_diff", "prediction_agreement"} <= set(asyn)
    assert euler["max_abs_state_diff"] == 0.0
    assert asyn["max_abs_state_diff"] <= 1e-4 and asyn["prediction_agreement"] == 1.0
    assert asyn["steps_mean"] <= 0.6 * euler["steps_mean"]


def one_line_error(capsys, *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()  # a progress bar may precede the error
    errors = [line for line in lines if line.startswith("ephw: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0]
    return errors[0]


def test_unknown_backend(capsys):
    line = one_line_error(capsys, "settle", "--backend", "loihi9")
    assert "loihi9" in line and "euler" in line and "async" in line


def test_wrong_image_shape(capsys, tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / split / cls / "0.png")
    line = one_line_error(capsys, "settle", "--data", "cifar10", "--data-root", str(tmp_path))
    assert "(3, 32, 32)" in line and "(1, 8, 8)" in line


def test_missing_data_folder(capsys, tmp_path):
    line = one_line_error(capsys, "settle", "--data", "cifar10", "--data-root", str(tmp_path / "nowhere"))
    assert "cifar10" in line and "nowhere" in line


def test_truncated_checkpoint(capsys, tmp_path):
    bad = tmp_path / "half.pt"
    data = BUNDLED_MODEL.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    line = one_line_error(capsys, "settle", "--model", str(bad))
    assert "half.pt" in line and "truncated" in line


def test_resume_without_checkpoint(capsys, tmp_path):
    line = one_line_error(capsys, "train", "ep", "--resume", "--out", str(tmp_path / "run"), "--no-progress")
    assert "no checkpoint" in line


def test_bench_settle_reports_ratios(capsys):
    code, out, _ = run(capsys, "bench", "settle", "--config", "digits", "--batch", "32", "--repeats", "1", "--json")
    r = json.loads(out)
    assert code == 0
    assert r["speedup_vs_autograd"] > 0 and r["max_abs_drive_diff"] < 1e-4
    steps = {row["solver"]: row["steps_mean"] for row in r["rows"]}
    assert steps["async"] < steps["euler"]


def test_console_script_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "ephw.cli.main", "settle", "--backend", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "valid backends" in proc.stderr


def test_sweep_writes_json_and_plot(capsys, tmp_path):
    png = tmp_path / "sweep.png"
    code, out, _ = run(
        capsys,
        "sweep",
        "--backend",
        "euler",
        "--param",
        "dt",
        "--values",
        "1,0.5",
        "--seeds",
        "2",
        "--n",
        "32",
        "--json",
        "--plot",
        str(png),
    )
    report = json.loads(out)
    assert code == 0 and png.stat().st_size > 1000
    assert [r["value"] for r in report["rows"]] == [1, 0.5]
    first = report["rows"][0]
    assert (
        first["max_abs_state_diff"]["mean"] == 0.0 and first["accuracy"]["values"] == [report["reference_accuracy"]] * 2
    )
    assert first["accuracy"]["ci95"] == 0.0
