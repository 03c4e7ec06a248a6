"""``ephw bench students``: every distilled student of a run folder against its teacher, timed in one run.

The speed-up each ``ephw distill`` records is one timing taken when that student finished, on
whatever else the machine was doing then: ratios of one architecture and teacher came out 2×
apart between seeds. Here every student's forward pass and every teacher's settle (each
distinct teacher once: checkpoint, backend and its options, settle budget) are timed in the
same rounds on the same test batch, so all ratios share the machine's state. A student's ratio
is the median teacher time over its median forward time; the range of the per-round ratios
says how much the noise moved it. A student of a feed-forward teacher (the BP-CNN control,
:mod:`ephw.distill.feedforward_teacher`) has no settle to be timed against: its row records the
model file with ``speedup`` ``None``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ephw.checkpoint import file_sha256, load_checkpoint, read_meta
from ephw.data import load_dataset
from ephw.distill.feedforward_teacher import FEEDFORWARD_BACKEND
from ephw.distill.teacher import Teacher, recorded_teacher_path
from ephw.errors import InputError
from ephw.feedforward import load_feedforward
from ephw.timing import time_rounds

#: The file of the run folder that holds the one-run timing (``ephw reproduce``'s ``timing`` stage).
SPEEDUP_FILE = "speedup.json"


def find_students(run_dir: str | Path) -> list[Path]:
    """``<run_dir>/*/model.pt`` files written by ``ephw distill``, sorted by folder name."""
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"{root}: no such run folder")
    return [p for p in sorted(root.glob("*/model.pt")) if read_meta(p).get("trainer") == "distill"]


def _teacher_key(settings: dict[str, Any], teacher: Path) -> str:
    budget = {
        k: settings.get(k) for k in ("teacher_backend", "teacher_backend_options", "teacher_steps", "teacher_tol")
    }
    return json.dumps({"path": str(teacher.resolve()), **budget}, sort_keys=True)


def bench_students(
    run_dir: str | Path,
    students: list[Path] | None = None,
    *,
    batch: int = 256,
    repeats: int = 5,
    data_root: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time every student of ``run_dir`` (or ``students``) against its teacher, interleaved in one run.

    Args:
        batch: test images of the timed batch (the first ``batch`` of the test set; fewer if it is smaller).
        repeats: timed rounds after one warm-up round; every round calls each function once.

    Returns:
        ``batch``, ``repeats``, ``threads``, ``device`` and ``students``: per student folder name its
        model's sha256, teacher checkpoint and backend, teacher steps (mean over the batch),
        seconds per image of each (median over rounds), ``speedup`` (their ratio) and
        ``speedup_rounds`` (min, max of the per-round ratios); a feed-forward teacher's student:
        its sha256, teacher and ``teacher_backend`` only, ``speedup`` ``None`` (nothing settles).
    """
    if batch < 1 or repeats < 1:
        raise InputError(f"batch and repeats must be >= 1, got {batch} and {repeats}")
    paths = list(students) if students is not None else find_students(run_dir)
    if not paths:
        raise InputError(f"{run_dir}: no distilled student (a model.pt written by `ephw distill`) to time")
    teachers: dict[str, Teacher] = {}
    images: dict[tuple[str, str | None], torch.Tensor] = {}
    entries: list[dict[str, Any]] = []
    untimed: dict[str, dict[str, Any]] = {}  # students of a feed-forward teacher: nothing to time
    for path in paths:
        student, meta = load_feedforward(path, device=device)
        settings = meta.get("settings") or {}
        if "teacher_backend" not in settings:
            raise InputError(f"{path}: not a distilled student (its meta has no teacher settings)")
        teacher_path = recorded_teacher_path(settings.get("teacher"), run_dir)
        if settings["teacher_backend"] == FEEDFORWARD_BACKEND:
            untimed[path.parent.name] = {
                "model_sha256": file_sha256(path),
                "teacher_path": str(teacher_path),
                "teacher_backend": FEEDFORWARD_BACKEND,
                "speedup": None,
            }
            continue
        key = _teacher_key(settings, teacher_path)
        if key not in teachers:
            net = load_checkpoint(teacher_path).model(torch.float32, device)
            teachers[key] = Teacher(
                net,
                settings["teacher_backend"],
                settings.get("teacher_backend_options"),
                settings.get("teacher_steps", 500),
                settings.get("teacher_tol", 1e-6),
            )
        data = (meta.get("data") or settings.get("data", "digits"), data_root or settings.get("data_root"))
        if data not in images:
            test = load_dataset(data[0], "test", data[1])
            images[data] = test.batch(slice(0, min(batch, len(test))))[0].to(device)
        entries.append(
            {"path": path, "student": student, "teacher": key, "teacher_path": teacher_path, "x": images[data]}
        )

    fns: dict[str, Callable[[], object]] = {}
    teacher_x: dict[str, torch.Tensor] = {}
    for e in entries:
        teacher_x.setdefault(e["teacher"], e["x"])
        fns[f"student {e['path'].parent.name}"] = lambda e=e: e["student"](e["x"])
    for key, x in teacher_x.items():
        fns[f"teacher {key}"] = lambda key=key, x=x: teachers[key].settle(x)
    with torch.no_grad():
        rounds = time_rounds(fns, repeats=repeats, device=torch.device(device)) if fns else {}
        steps = {key: float(teachers[key].settle(x).steps_per_sample.float().mean()) for key, x in teacher_x.items()}

    out: dict[str, Any] = {}
    for e in entries:
        name = e["path"].parent.name
        s, t = rounds[f"student {name}"], rounds[f"teacher {e['teacher']}"]
        per_round = [ti / si for ti, si in zip(t, s)]
        b = e["x"].shape[0]
        out[name] = {
            "model_sha256": file_sha256(e["path"]),
            "teacher_path": str(e["teacher_path"]),
            "teacher_backend": teachers[e["teacher"]].backend_name,
            "teacher_steps_mean": steps[e["teacher"]],
            "student_seconds_per_image": statistics.median(s) / b,
            "teacher_seconds_per_image": statistics.median(t) / b,
            "speedup": statistics.median(t) / statistics.median(s),
            "speedup_rounds": [min(per_round), max(per_round)],
        }
    out.update(untimed)
    out = {p.parent.name: out[p.parent.name] for p in paths}  # the students' order
    first = next(iter(images.values()), None)
    return {
        "batch": None if first is None else int(first.shape[0]),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "device": device,
        "students": out,
    }


def current_timing(run_dir: str | Path) -> dict[str, Any] | None:
    """The run folder's :data:`SPEEDUP_FILE`, keeping only students whose model file is still the one timed.

    ``None`` when the file is absent or unreadable.
    """
    path = Path(run_dir) / SPEEDUP_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kept = {}
    for name, row in (record.get("students") or {}).items():
        model = Path(run_dir) / name / "model.pt"
        if model.is_file() and file_sha256(model) == row.get("model_sha256"):
            kept[name] = row
    return {**record, "students": kept}
