"""SIGTERM handled like Ctrl-C, and critical sections no signal interrupts.

:func:`install` (called by the ``ephw`` command) makes SIGTERM raise :class:`Terminated`, a
:class:`KeyboardInterrupt`, in the main thread: whatever shuts down cleanly on Ctrl-C (a
training run checkpoints, lava stops its processes, locks are released) does so on SIGTERM
too, and the command exits with status 143 instead of dying mid-write.

:func:`deferred` holds SIGINT and SIGTERM back for a few statements that must happen together
(an optimiser step and the position that records it); a signal arriving meanwhile is
delivered when the block ends.

:func:`die_with_parent` asks the kernel to SIGKILL this process when its parent dies (a
torchrun worker whose launcher was SIGKILLed must not run on, holding its run lock).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: Signals that end an ephw command cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (handled wherever Ctrl-C is)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


def install() -> None:
    """SIGTERM raises :class:`Terminated` (main thread only; elsewhere this does nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block has run (then they take effect).

    The handlers are swapped for one that only records the signal (a signal mask would not
    do: the kernel may deliver the signal to one of torch's worker threads, and Python then
    runs the handler in the main thread all the same). Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler != signal.SIG_IGN:  # SIG_DFL (or not set from Python): the default action
                signal.raise_signal(caught[0])


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> bool:
    """SIGKILL this process when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``); exit now if it already has.

    The parent is taken to be gone when this process was re-parented to init (pid 1) before the
    request took effect. Returns whether the kernel took the request (``False`` off Linux).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() == 1:  # orphaned before the request: the parent died while this process started
        os._exit(1)
    return True
