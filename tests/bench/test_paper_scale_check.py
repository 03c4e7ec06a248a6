"""benchmarks/paper_scale_check.py keeps working: run on CPU with the tiny budget, ephw from PYTHONPATH.

Running all ~21 commands costs ~2 min of one core (each is a fresh ``python -m ephw`` process),
so this runs the EP timing and a representative subset (a settle, EP training through the CLI,
a distillation); the JSON still lists every command, the others as ``not run``. The whole set
runs with ``python benchmarks/paper_scale_check.py --budget tiny --device cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ephw.backends import backend_names
from ephw.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "paper_scale_check.py"
SUBSET = ("timing", "settle-async", "train-ep", "distill")


def device_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every ``ephw`` (sub)command that takes ``--device`` (``settle``, ``train ep``, ...)."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= device_commands(sub, (*prefix, name))
        elif "--device" in action.option_strings and prefix:
            found.add(" ".join(prefix))
    return found


def test_paper_scale_check_tiny_cpu(tmp_path):
    out = tmp_path / "out"
    scratch = tmp_path / "tmp"  # $TMPDIR: where the script's work folder goes (and must go again)
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["TMPDIR"] = str(scratch)
    cmd = [sys.executable, str(SCRIPT), "--budget", "tiny", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(
        [*cmd, "--only", ",".join(SUBSET)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "paper_scale_check.json").read_text())
    assert report["device"] == "cpu" and report["torch"] and report["failed"] == []
    rows = {r["name"]: r for r in report["commands"]}
    # every ephw command that takes --device is in the script (a new command must be added there)
    assert device_commands(build_parser()) <= {r["cli"] for r in rows.values()}
    assert {f"settle-{b}" for b in backend_names()} <= set(rows)  # plugins included
    for name in SUBSET[1:]:
        assert rows[name]["status"] == "ok" and rows[name]["rc"] == 0, rows[name]
        assert "--device cpu" in rows[name]["command"]
    assert {r["status"] for n, r in rows.items() if n not in SUBSET} == {"not run"}
    timing = report["ep_epoch_timing"]
    assert timing["timed_batches"] == 2 and len(timing["seconds_per_batch"]) == 2
    assert timing["median_seconds_per_batch"] > 0 and timing["image_sweeps_per_batch"] > 0
    assert "budget gpu" in timing["settings_source"]  # the phases follow the gpu budget's train ep command
    assert "one CIFAR-10 epoch" not in proc.stdout  # tiny: nothing extrapolated
    assert not list(scratch.glob("ephw-paper-scale-*"))  # the work folder is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tmp"]  # nothing written where it was started
