"""SIGTERM to ``ephw train``: a checkpoint is written, the command exits 143, and nothing of it survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ephw.checkpoint import load_checkpoint
from ephw.outputs import OutputLock


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    """Every process whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return out


def test_sigterm_checkpoints_and_exits_nonzero(tmp_path: Path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ephw.cli.main", "train", "ep", "--data", "digits", "--epochs", "1"]
    cmd += ["--batch-size", "8", "--free-steps", "3", "--nudge-steps", "2", "--checkpoint-every", "1000"]
    cmd += ["--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    kids = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "ephw: terminated (SIGTERM)"
    state = load_checkpoint(out / "checkpoint.pt").training
    assert state["epoch"] == 0 and state["batch"] >= 20  # the work up to the signal is kept (no periodic save ran)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert all(r["event"] == "train" for r in rows)
    assert not any(alive(p) for p in kids)
    OutputLock(out).acquire().release()  # the lock file stays, its flock went with the process
