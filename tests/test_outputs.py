"""ephw.outputs: atomic writes (ENOSPC keeps the old file and leaves no temporary), checked appends, run locks."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from ephw import outputs
from ephw.checkpoint import BUNDLED_MODEL, load_checkpoint, save_checkpoint
from ephw.errors import OutputError
from ephw.outputs import OutputLock, append_line, atomic_write, check_writable, save_figure, truncate_to


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_enospc_while_saving_a_checkpoint_keeps_the_old_one_and_no_temporary(tmp_path, monkeypatch):
    ckpt = load_checkpoint(BUNDLED_MODEL)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, ckpt)
    before = path.read_bytes()
    monkeypatch.setattr(outputs.os, "fsync", no_space)
    with pytest.raises(OutputError) as info:
        save_checkpoint(path, ckpt)
    assert str(info.value) == f"cannot write {path}: No space left on device"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_figures_are_written_atomically_in_the_format_of_their_suffix(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = save_figure(tmp_path / "a" / "fig.png", fig)  # the folder is created
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert save_figure(tmp_path / "fig.pdf", fig).read_bytes()[:4] == b"%PDF"
    with pytest.raises(OutputError, match="unknown format 'bogus'"):
        save_figure(tmp_path / "fig.bogus", fig)
    monkeypatch.setattr(outputs.os, "fsync", no_space)
    with pytest.raises(OutputError, match="No space left on device"):
        save_figure(png, fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sorted(p.name for p in png.parent.iterdir()) == ["fig.png"]
    plt.close(fig)


def test_check_writable_refuses_folders_files_in_the_way_and_read_only_places(tmp_path, monkeypatch):
    assert check_writable(tmp_path / "new" / "x.png") == tmp_path / "new" / "x.png"
    assert list((tmp_path / "new").iterdir()) == []  # its probe is gone
    with pytest.raises(OutputError, match="is a folder: give a file name"):
        check_writable(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="output folder .* is a file"):
        check_writable(tmp_path / "f" / "x.png")
    monkeypatch.setattr(outputs.tempfile, "mkstemp", _erofs)
    with pytest.raises(OutputError, match="Read-only file system"):
        check_writable(tmp_path / "x.png")


def _erofs(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_append_line_cuts_a_short_write_back_off(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    append_line(path, '{"a": 1}')
    real_write = os.write
    monkeypatch.setattr(outputs.os, "write", lambda fd, data: real_write(fd, data[:3]))
    with pytest.raises(OutputError, match="short write"):
        append_line(path, '{"b": 2}')
    assert path.read_text() == '{"a": 1}\n'


def test_truncate_to_keeps_whole_chosen_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text("1\n2\n3\ntorn")
    assert truncate_to(path, lambda line: line != "2") == 2
    assert path.read_text() == "1\n3\n"
    assert truncate_to(tmp_path / "missing", lambda line: True) == 0


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    path = atomic_write(tmp_path / "m.json", "old")

    def writer(fh):
        fh.write(b"half")
        raise RuntimeError("died")

    with pytest.raises(RuntimeError):
        atomic_write(path, writer)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_a_second_holder_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = (
        f"from ephw.outputs import OutputLock; OutputLock({str(run)!r}).acquire(); print('held', flush=True); input()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError) as info:
            OutputLock(run).acquire()
        assert str(info.value) == (
            f"{run} is in use by another ephw run (pid {holder.pid}): wait for it, or choose another output"
        )
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the flock with the process
        try:
            lock = OutputLock(run).acquire()
            break
        except OutputError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert (run / ".ephw.lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_a_lock_on_a_full_disk_is_one_line_and_leaves_no_lock_file(full_disk):
    """Issue 34 item 4: ``os.pwrite`` of the holder's pid hits ENOSPC on a real full tmpfs."""
    run = full_disk / "run"
    with pytest.raises(OutputError) as info:
        OutputLock(run, folder=True).acquire()
    assert str(info.value) == f"cannot create lock {run / '.ephw.lock'}: No space left on device"
    results = full_disk / "r.jsonl"
    with pytest.raises(OutputError, match="No space left on device"):
        OutputLock(results).acquire()
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no lock file, no folder


def test_a_run_refused_before_it_wrote_anything_leaves_no_lock_nor_folder(tmp_path):
    out = tmp_path / "a" / "run"
    with pytest.raises(OutputError, match="refused"):
        with OutputLock(out, folder=True):
            raise OutputError("refused")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):  # once something was written, everything stays
        with OutputLock(out, folder=True):
            (out / "metrics.jsonl").write_text("{}\n")
            raise RuntimeError("died")
    assert sorted(p.name for p in out.iterdir()) == [".ephw.lock", "metrics.jsonl"]
    with OutputLock(out):  # a clean exit keeps the lock file, as before
        pass
    assert (out / ".ephw.lock").is_file()


def test_shared_holders_coexist_and_exclude_an_exclusive_one(tmp_path):
    target = tmp_path / "r.jsonl"
    a = OutputLock(target, shared=True).acquire()
    b = OutputLock(target, shared=True).acquire()
    with pytest.raises(OutputError, match="is in use by another ephw run"):
        OutputLock(target).acquire()
    a.release()
    b.release()
    excl = OutputLock(target).acquire()
    with pytest.raises(OutputError, match="is in use by another ephw run"):
        OutputLock(target, shared=True).acquire()
    excl.release()


def test_stale_temporaries_of_the_same_output_are_removed_live_ones_kept(tmp_path, monkeypatch):
    target = tmp_path / "page.md"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited: its pid is free (reuse within this test is not expected)
    host = outputs._HOST
    names = {
        "dead": f".page.md.{dead_pid}@{host}.abcd1234.tmp",  # its writer is gone: stale now
        "live": f".page.md.{os.getppid()}@{host}.abcd1234.tmp",  # a running writer's: kept
        "other-host": f".page.md.{dead_pid}@0000beef.abcd1234.tmp",  # unknown host, fresh: kept
        "old": ".page.md.k2j4h5g6.tmp",  # an older ephw's, untouched for an hour: stale
        "fresh": ".page.md.q1w2e3r4.tmp",  # an older ephw's, fresh: kept
        "other-target": f".other.md.{dead_pid}@{host}.abcd1234.tmp",  # not this output's: kept
    }
    for name in names.values():
        (tmp_path / name).write_text("half")
    hour_ago = time.time() - 3600
    os.utime(tmp_path / names["old"], (hour_ago, hour_ago))
    atomic_write(target, "new")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["page.md", *(names[k] for k in ("live", "other-host", "fresh", "other-target"))])


def test_a_write_killed_with_sigkill_leaves_a_temporary_the_next_write_removes(tmp_path):
    """Issue 34 item 6: SIGKILL in the middle of ``atomic_write``; the next write of the same output cleans up."""
    target = tmp_path / "m.json"
    code = (
        "import sys, time\n"
        "from ephw.outputs import atomic_write\n"
        "def writer(fh):\n"
        "    fh.write(b'half'); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"atomic_write({str(target)!r}, writer)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".m.json.") and leftovers[0].endswith(".tmp")
    atomic_write(target, "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
