"""Lava's worker processes live no longer than the process that started them.

lava-nc forks one process per process model, one for its runtime service and one for
multiprocessing's shared-memory manager. Without help they outlive a parent killed by
SIGKILL (or any death that skips the clean teardown): they keep running, hold the caller's
stdout pipe and their shared memory in ``/dev/shm``.

:func:`children_die_with_parent` is the context in which lava forks them. An at-fork hook
(``os.register_at_fork``, no code of lava's is copied or changed) runs in every child forked
meanwhile and

- asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)`` through
  ``ctypes``), and exits at once if the parent is already gone;
- ignores SIGINT and SIGTERM: Ctrl-C or a ``kill`` of the process group reaches the parent,
  which tears the network down in order (:meth:`ephw.lava.network.LavaNetwork.stop`).

When the workers are gone, multiprocessing's resource tracker (which exits once the last
holder of its pipe has) unlinks the shared-memory segments they leave behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_state: dict[str, Any] = {"armed": False, "parent": 0, "hooked": False, "prctl": None}


def _libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (``None`` where there is none, e.g. not Linux); looked up in the parent, before forking."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _in_child() -> None:
    if not _state["armed"]:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    prctl = _state["prctl"]
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _state["parent"]:  # the parent died before the request took effect
        os._exit(1)
    _state["parent"] = os.getpid()  # and the child's own children die with it


@contextmanager
def children_die_with_parent() -> Iterator[None]:
    """Every process forked by this process inside the block dies with it (see the module docstring)."""
    if not _state["hooked"]:
        _state["prctl"] = _libc_prctl()
        os.register_at_fork(after_in_child=_in_child)
        _state["hooked"] = True
    _state["armed"], _state["parent"] = True, os.getpid()
    try:
        yield
    finally:
        _state["armed"] = False
