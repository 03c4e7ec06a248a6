"""Every file ephw writes goes through here: atomic replacement, checked appends, run locks.

- :func:`atomic_write` writes to a temporary file beside the target, ``fsync``s it and moves it
  into place with :func:`os.replace`: a reader sees the old file or the new one, never a torn
  one, and a failed write (ENOSPC, read-only disk, an exception) leaves no ``*.tmp`` behind. A
  writer killed outright (``SIGKILL``, power loss) cannot remove its temporary
  ``.NAME.PID@HOST.XXXXXXXX.tmp``; the next write of the same ``NAME`` removes such leftovers
  (:func:`remove_stale_temporaries`: the writer's pid is gone on this host, or the file has not
  been modified for :data:`STALE_TMP_S` seconds).
- :func:`check_writable` fails before a long computation whose result could not be written;
  :func:`save_figure` is :func:`atomic_write` for matplotlib figures.
- :func:`append_line` appends one line with a single ``write`` whose length is checked, then
  ``fsync``s (results files and ``metrics.jsonl``); :func:`truncate_to` trims a log on resume.
- :class:`OutputLock` holds an exclusive ``fcntl.flock`` on ``<target>.lock`` for a run's
  lifetime. A second run on the same output is refused with one line naming the holder's pid;
  the kernel drops the lock when its process dies, so a stale lock file is simply taken over.
  ``shared=True`` takes a shared lock instead: any number of shared holders, but never beside
  an exclusive one (the shards of a robustness run vs an unsharded run on the same results).
  A lock that cannot be taken (a full disk) removes the lock file it created; a run that fails
  before it wrote anything (a ``with`` block left by an exception, e.g. a validation error)
  removes the lock file and the folders the lock created, so a refused command leaves no trace.

Operating-system failures become :class:`~ephw.errors.OutputError` with one line that names
the file and the reason (``No space left on device``, ``Read-only file system`` …).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import tempfile
import time
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


#: A temporary file of :func:`atomic_write` untouched for this long is a dead writer's leftover,
#: whoever wrote it (a writer on another host sharing the folder included): 10 minutes, far longer
#: than any single write takes (ephw serialises everything before it writes).
STALE_TMP_S = 600.0


def _host_tag() -> str:
    """8 hex digits naming this machine's pid space (boot id + pid namespace): a pid in a temporary
    file's name is only checked for liveness where it means the same process."""
    parts = []
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("/ns/pid") else Path(source).read_text().strip())
        except OSError:
            parts.append(os.uname().nodename)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


_HOST = _host_tag()


def _temporary(path: Path) -> tuple[int, str]:
    """``mkstemp`` beside ``path``: ``.NAME.PID@HOST.XXXXXXXX.tmp`` (the pid and host let a later writer
    tell a dead writer's leftover from a live one's file)."""
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_HOST}.", suffix=".tmp", dir=path.parent)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the leftover temporary files of earlier, killed writes of ``path``; returns those removed.

    A file of the same target (``.NAME.PID@HOST.XXXXXXXX.tmp``, or ``.NAME.XXXXXXXX.tmp`` of older
    ephw versions) is stale when its writer's ``PID`` is not running and ``HOST`` is this machine's
    pid space, or when it was last modified more than :data:`STALE_TMP_S` seconds ago. A live
    writer's temporary is never touched: its pid runs (or, on another host, it is fresh).
    Failures to list or remove are ignored (the write itself reports real problems).
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)@([0-9a-f]{{8}})\.)?[A-Za-z0-9_]{{8}}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            dead = m.group(1) is not None and m.group(2) == _HOST and not _pid_alive(int(m.group(1)))
            if dead or age > STALE_TMP_S:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


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
        fd, tmp = _temporary(path)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    os.unlink(tmp)
    return path


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], Any], mode: int = 0o644) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or ``writer(binary_file)``) to ``path`` atomically.

    The parent folder is created. Raises :class:`OutputError` (one line) on any OS failure,
    removing the temporary file; the previous content of ``path`` is kept. Temporaries that
    killed writes of ``path`` left behind are removed first (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    ensure_dir(path.parent)
    remove_stale_temporaries(path)
    try:
        fd, tmp = _temporary(path)
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


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    out = []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


class OutputLock:
    """Exclusive (or shared) lock on an output (a run folder or a results file) for a run's lifetime.

    ``with OutputLock(run_dir):`` or ``lock = OutputLock(path).acquire()`` … ``lock.release()``.
    The lock file is ``<path>.lock`` for a file and ``<path>/.ephw.lock`` for a folder (an
    existing one, or any target with ``folder=True``, created by :meth:`acquire`); it records the
    holder's pid. A second acquirer gets :class:`OutputError` naming that pid. ``shared=True``:
    any number of shared holders at once, none beside an exclusive holder.

    Leaving the ``with`` block by an exception while the output is still untouched (the folder
    holds nothing but the lock, the file was never written) removes the lock file and the
    folders :meth:`acquire` created: a command refused after it locked leaves nothing behind.
    """

    def __init__(self, target: str | Path, shared: bool = False, folder: bool | None = None) -> None:
        target = Path(target)
        self.target = target
        self.shared = shared
        self.folder = target.is_dir() if folder is None else folder
        self.path = target / ".ephw.lock" if self.folder else target.with_name(target.name + ".lock")
        self._fd: int | None = None
        self._made: list[Path] = []  # folders acquire() created, deepest first
        self._created = False  # whether acquire() created the lock file

    def acquire(self) -> OutputLock:
        """Take the lock (:class:`OutputError`, one line, when another run holds it or the disk refuses)."""
        made = _missing_dirs(self.path.parent)
        ensure_dir(self.path.parent)
        created = False
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            _remove_empty(made)
            raise output_error(self.path, exc, "create lock") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OutputError(
                f"{self.target} is in use by another ephw run (pid {holder}): wait for it, or choose another output"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk (or quota): no run may start on an output it cannot write
            if created:  # still locked by us: nobody else uses this file
                self.path.unlink(missing_ok=True)
            os.close(fd)
            _remove_empty(made)
            raise output_error(self.path, exc, "create lock") from None
        self._fd, self._made, self._created = fd, made, created
        return self

    def untouched(self) -> bool:
        """Whether nothing but the lock was written to the output (no file in the folder, no target file)."""
        if self.folder:
            try:
                return {e.name for e in os.scandir(self.target)} <= {self.path.name}
            except OSError:
                return False
        return not self.target.exists()

    def release(self, discard: bool = False) -> None:
        """Drop the lock; ``discard``: also remove the lock file and the folders :meth:`acquire` created,
        if it created the lock file and the output is :meth:`untouched`."""
        if self._fd is None:
            return
        if discard and self._created and self.untouched():
            self.path.unlink(missing_ok=True)  # before unlocking: a later acquirer makes a fresh file
            _remove_empty(self._made)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release(discard=exc_type is not None)


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
