"""``ephw bench students``: every student of a run folder against its teacher, timed in one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ephw.bench.students import bench_students, current_timing, find_students
from ephw.checkpoint import BUNDLED_MODEL, save_model
from ephw.cli.main import main
from ephw.distill.trainer import DistillSettings, distill
from ephw.errors import InputError
from ephw.model import EnergyModel, named_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: a teacher step, two quick students of it and an unrelated EP model."""
    root = tmp_path_factory.mktemp("students") / "run"
    (root / "ep-s0").mkdir(parents=True)
    shutil.copy(BUNDLED_MODEL, root / "ep-s0" / "model.pt")
    for seed in (0, 1):
        distill(
            DistillSettings(
                teacher=str(root / "ep-s0" / "model.pt"),
                student="cnn",
                width=4,
                epochs=1,
                max_batches=2,
                seed=seed,
                test_n=32,
                timing_batch=8,
                timing_repeats=1,
                out=str(root / f"distilled-s{seed}"),
                progress=False,
            )
        )
    return root


def test_students_share_one_timing_of_their_teacher(run_dir: Path) -> None:
    assert [p.parent.name for p in find_students(run_dir)] == ["distilled-s0", "distilled-s1"]
    r = bench_students(run_dir, batch=16, repeats=3)
    assert r["batch"] == 16 and r["repeats"] == 3 and set(r["students"]) == {"distilled-s0", "distilled-s1"}
    a, b = r["students"].values()
    assert a["teacher_seconds_per_image"] == b["teacher_seconds_per_image"]  # one teacher, timed once per round
    for row in r["students"].values():
        assert row["teacher_backend"] == "async" and row["teacher_steps_mean"] > 1
        ratio = row["teacher_seconds_per_image"] / row["student_seconds_per_image"]
        assert row["speedup"] == pytest.approx(ratio)
        low, high = row["speedup_rounds"]
        assert low <= row["speedup"] <= high


def test_a_moved_run_folder_finds_its_teacher_in_the_folder(run_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)  # the students' meta still names the old (absolute) teacher path
    shutil.rmtree(run_dir / "ep-s0")
    try:
        r = bench_students(moved, batch=8, repeats=1)
    finally:
        shutil.copytree(moved / "ep-s0", run_dir / "ep-s0")
    assert {row["teacher_path"] for row in r["students"].values()} == {str(moved / "ep-s0" / "model.pt")}


def test_cli_writes_the_report_and_a_retrained_student_drops_out_of_it(run_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    out = run / "speedup.json"
    assert main(["bench", "students", "--run-dir", str(run), "--batch", "8", "--repeats", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distilled-s0" in printed and "speedup" in printed
    assert set(json.loads(out.read_text())["students"]) == {"distilled-s0", "distilled-s1"}
    save_model(run / "distilled-s1" / "model.pt", EnergyModel(named_config("digits")), {"trainer": "distill"})
    assert set(current_timing(run)["students"]) == {"distilled-s0"}


def test_a_folder_without_students_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no distilled student"):
        bench_students(tmp_path)
    with pytest.raises(InputError, match="no such run folder"):
        bench_students(tmp_path / "absent")
    assert main(["bench", "students", "--run-dir", str(tmp_path), "--repeats", "0"]) != 0
