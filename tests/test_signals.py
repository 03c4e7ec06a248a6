"""ephw.signals: SIGTERM raises Terminated; deferred() delivers a signal only after its block."""

from __future__ import annotations

import os
import signal

import pytest

from ephw.signals import Terminated, deferred, install


def test_sigterm_raises_terminated_and_deferred_holds_it_until_the_block_ends():
    previous = signal.getsignal(signal.SIGTERM)
    install()
    try:
        done = []
        with pytest.raises(Terminated):
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("after the signal")  # still runs: the signal waits for the block's end
        assert done == ["after the signal"]
        with pytest.raises(KeyboardInterrupt):
            with deferred():
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # not reached: the handler raises at once outside deferred()
    finally:
        signal.signal(signal.SIGTERM, previous)
