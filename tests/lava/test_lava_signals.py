"""A lava settle killed by SIGTERM or SIGKILL leaves no process and no shared memory behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec

import pytest

pytestmark = pytest.mark.skipif(find_spec("lava") is None, reason="lava-nc not installed (make test installs it)")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
    found, todo = [], [pid]
    while todo:
        pid = todo.pop()
        kids = [p for p, parent in parents.items() if parent == pid]
        found += kids
        todo += kids
    return found


def shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_lava_settle_leaves_no_process_and_no_shared_memory(sig):
    before = shm()
    cmd = [sys.executable, "-m", "ephw.cli.main", "settle", "--backend", "lava", "--n", "32", "--batch", "32"]
    cmd += ["--steps", "20000", "--tol", "1e-30"]  # runs until killed (a few minutes at most)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(descendants(proc.pid)) < 5 and time.monotonic() < deadline:  # lava's workers are up
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        workers = descendants(proc.pid)
        ours = shm() - before
        assert len(workers) >= 5 and ours
        proc.send_signal(sig)
        # communicate returns once every holder of the output pipes has exited
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "ephw: terminated (SIGTERM)", err
    else:
        assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while (any(alive(p) for p in workers) or ours & shm()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if alive(p)]
    assert not ours & shm()
