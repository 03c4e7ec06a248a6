"""Every file ephw writes goes through here: atomic replacement, checked appends, run locks.

- :func:`atomic_write` writes to a temporary file beside the target, ``fsync``s it and moves it
  into place with :func:`os.replace`: a reader sees the old file or the new one, never a torn
  one, and a failed write (ENOSPC, read-only disk, a kill) leaves no ``*.tmp`` behind.
- :func:`check_writable` fails before a long computation whose result could not be written;
  :func:`save_figure` is :func:`atomic_write` for matplotlib figures.
- :func:`append_line` appends one line with a single ``write`` whose length is checked, then
  ``fsync``s (results files and ``metrics.jsonl``); :func:`truncate_to` trims a log on resume.
- :class:`OutputLock` holds an exclusive ``fcntl.flock`` on ``<target>.lock`` for a run's
  lifetime. A second run on the same output is refused with one line naming the holder's pid;
  the kernel drops the lock when its process dies, so a stale lock file is simply taken over.

Operating-system failures become :class:`~ephw.errors.OutputError` with one line that names
the file and the reason (``No space left on device``, ``Read-only file system`` …).
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ephw.errors import OutputError


def output_error(path: str | Path, exc: OSError, what: str = "write") -> OutputError:
    """A one-line :class:`OutputError` for an ``OSError`` raised while writing ``path``."""
    reason = exc.strerror or str(exc).splitlines()[0]
    return OutputError(f"cannot {what} {path}: {reason}")


def ensure_dir(path: str | Path) -> Path:
    """Create folder ``path`` (and parents); a file in the way or a read-only parent is an OutputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is a file: choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc, "create folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {path}: permission denied (read-only folder?)")
    return path


def check_writable(path: str | Path) -> Path:
    """Fail now, not after an hour's work, if file ``path`` could not be written later.

    Creates the parent folder and a temporary file in it (removed again). Raises
    :class:`OutputError` (one line) if ``path`` is a folder or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name")
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    os.unlink(tmp)
    return path


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], Any], mode: int = 0o644) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or ``writer(binary_file)``) to ``path`` atomically.

    The parent folder is created. Raises :class:`OutputError` (one line) on any OS failure,
    removing the temporary file; the previous content of ``path`` is kept.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; ephw outputs are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(path: str | Path, fig: Any, dpi: int = 120) -> Path:
    """Save matplotlib figure ``fig`` to ``path`` atomically, in the format its suffix names (default png)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise OutputError(f"cannot save a figure as {path}: unknown format {fmt!r}; use one of {', '.join(supported)}")
    return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi))


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` (a newline is added) with one checked ``write``, then ``fsync``.

    A short write (a full disk) is cut back off the file, so the file only ever holds whole
    lines, and raises :class:`OutputError`.
    """
    path = Path(path)
    blob = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, blob)
            if written != len(blob):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(blob)} bytes)")
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise output_error(path, exc) from None
    finally:
        os.close(fd)


def truncate_to(path: str | Path, keep: Callable[[str], bool]) -> int:
    """Rewrite the line file ``path`` atomically, keeping the lines for which ``keep(line)``; returns lines dropped.

    A torn last line (no newline) is always dropped. A missing file is left missing.
    """
    path = Path(path)
    if not path.exists():
        return 0
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is torn (or empty)
    kept = [ln for ln in complete if keep(ln)]
    dropped = len(complete) - len(kept) + (1 if lines[-1] else 0)
    if dropped:
        atomic_write(path, "".join(ln + "\n" for ln in kept))
    return dropped


def file_output_lock(path: str | Path | None) -> AbstractContextManager[Any]:
    """For an optional output file (``--plot``): checked now (:func:`check_writable`) and locked
    while the context runs; ``None``: nothing to lock."""
    return nullcontext() if path is None else OutputLock(check_writable(path))


class OutputLock:
    """Exclusive lock on an output (a run folder or a results file) for a run's lifetime.

    ``with OutputLock(run_dir):`` or ``lock = OutputLock(path).acquire()`` … ``lock.release()``.
    The lock file is ``<path>.lock`` for a file and ``<path>/.ephw.lock`` for a folder; it
    records the holder's pid. A second acquirer gets :class:`OutputError` naming that pid.
    """

    def __init__(self, target: str | Path) -> None:
        target = Path(target)
        self.target = target
        self.path = target / ".ephw.lock" if target.is_dir() else target.with_name(target.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(self.path, exc, "create lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OutputError(
                f"{self.target} is in use by another ephw run (pid {holder}): wait for it, or choose another output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
