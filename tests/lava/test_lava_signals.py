"""A lava settle killed by SIGTERM or SIGKILL leaves no process and no shared memory behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
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


def running_workers(proc: subprocess.Popen) -> list[int]:
    """Lava's workers once they are all up: at least five descendants, the same ones for 2 s."""
    deadline = time.monotonic() + 180
    seen, since = [], time.monotonic()
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        now = sorted(descendants(proc.pid))
        if now != seen:
            seen, since = now, time.monotonic()
        elif len(now) >= 5 and time.monotonic() - since > 2.0:
            return now
        time.sleep(0.1)
    raise AssertionError(f"lava's workers did not come up: {seen}")


def forks(pid: int) -> list[int]:
    """Children of ``pid`` forked from it (same command line), not programs it ran."""
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        cmdline = fh.read()
    found = []
    for child in descendants(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                if fh.read() == cmdline:
                    found.append(child)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def marked(mark: str) -> list[int]:
    """Live processes whose environment holds ``EPHW_TEST_MARK=mark`` (they inherit it, orphaned or not)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if f"EPHW_TEST_MARK={mark}".encode() in fh.read().split(b"\0") and alive(int(entry)):
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.mark.parametrize(
    ("sig", "when"),
    [(signal.SIGTERM, "running"), (signal.SIGKILL, "running"), (signal.SIGTERM, "forking")],
    ids=["SIGTERM", "SIGKILL", "SIGTERM-while-lava-forks"],
)
def test_killed_lava_settle_leaves_no_process_and_no_shared_memory(sig, when):
    before = shm()
    mark = uuid.uuid4().hex
    cmd = [sys.executable, "-m", "ephw.cli.main", "settle", "--backend", "lava", "--n", "32", "--batch", "32"]
    cmd += ["--steps", "20000", "--tol", "1e-30"]  # runs until killed (a few minutes at most)
    env = {**os.environ, "EPHW_TEST_MARK": mark}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if when == "running":
            assert len(running_workers(proc)) >= 5 and shm() - before
        else:  # the first of lava's forks (its shared-memory manager) is there, the others are coming
            deadline = time.monotonic() + 180
            while not forks(proc.pid) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.01)
        proc.send_signal(sig)
        # communicate returns once every holder of the output pipes has exited
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "ephw: terminated (SIGTERM)", err
        assert "Traceback" not in err and "Exception ignored" not in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while (marked(mark) or shm() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not marked(mark)
    assert not shm() - before
