"""ephw under torchrun on 2 gloo ranks: one error line for a bad command, workers that die with their launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ephw.errors import OutputError
from ephw.outputs import OutputLock
from test_data_parallel import LIMIT_S, descendants, env, torchrun, wait_gone


@pytest.mark.slow
def test_a_bad_command_is_reported_once_not_once_per_rank(tmp_path: Path) -> None:
    """Issue 34 item 8: rank > 0 stays quiet on a configuration error every rank hits; no folder is left."""
    out = tmp_path / "run"
    for argv, line in (
        (["train", "bp", "--data", "nonsense", "--out", str(out)], "ephw: error: unknown dataset 'nonsense'"),
        (["settle", "--batch", "0"], "error: argument --batch: must be >= 1, got 0"),
    ):
        proc = subprocess.run(
            torchrun(2, "-m", "ephw", "--", *argv), env=env(), capture_output=True, text=True, timeout=LIMIT_S
        )
        assert proc.returncode == 1  # torchrun's own status for any failed worker (docs/distributed.md)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(("ephw: error", "usage:")) or "error:" in ln]
        assert len([ln for ln in errors if line in ln]) == 1, proc.stderr[-3000:]
    assert not out.exists()


@pytest.mark.slow
def test_workers_of_a_sigkilled_torchrun_exit_and_release_the_run_lock(tmp_path: Path) -> None:
    """Issue 34 item 8: SIGKILL of torchrun alone; its workers die with it (parent-death signal)."""
    out = tmp_path / "run"
    argv = ["train", "ep", "--data", "digits", "--epochs", "50", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(
        torchrun(2, "-m", "ephw", "--", *argv),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + LIMIT_S
        lock = out / ".ephw.lock"
        while time.monotonic() < deadline and proc.poll() is None:  # rank 0 holds the run lock, training
            if (out / "metrics.jsonl").is_file() and lock.is_file() and lock.read_text().strip():
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        workers = descendants(proc.pid)
        assert len(workers) >= 2, workers
        assert int(lock.read_text()) in workers
        os.kill(proc.pid, signal.SIGKILL)  # torchrun only: the workers are not signalled by anyone
        proc.wait(timeout=30)
        wait_gone(workers, timeout_s=60)
    finally:
        for pid in [proc.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # the lock went with its holder; on a loaded machine the last fd can close a moment after the pid is gone
    deadline = time.monotonic() + 30
    while True:
        try:
            OutputLock(out).acquire().release()
            break
        except OutputError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
