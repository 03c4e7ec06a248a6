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
