"""A Ctrl-C that Python drops (in a finalizer, an at-fork hook) is raised again.

runner/interrupts.py; the runners' use of it: tests/test_runner.py.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import pytest

from runner import interrupts


def deliver_in_a_finalizer():
    """SIGINT delivered while a __del__ runs: its KeyboardInterrupt is 'Exception ignored'."""

    class Victim:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, inside __del__

    Victim()
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_swallowed_ctrl_c_is_raised_at_the_next_check():
    with interrupts.sticky():
        deliver_in_a_finalizer()  # no exception escapes: Python printed and dropped it
        with pytest.raises(KeyboardInterrupt, match=f"signal {int(signal.SIGINT)}"):
            interrupts.check()
    interrupts.check()  # outside the block: nothing noted


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_without_sticky_the_ctrl_c_is_lost():
    """What the runners had before: the delivery returns normally and leaves nothing to act
    on (should Python ever raise it, this fails and the module may go)."""
    deliver_in_a_finalizer()
    interrupts.check()  # nothing noted outside a sticky block


def test_handlers_come_back_and_an_ignored_signal_stays_ignored():
    before = signal.getsignal(signal.SIGINT)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with interrupts.sticky():
            assert signal.getsignal(signal.SIGINT) is not before  # wrapped
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # left alone
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            interrupts.check()  # an ignored signal is not noted
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def test_a_normal_ctrl_c_still_raises_where_it_lands():
    with interrupts.sticky(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)


def test_outside_the_main_thread_nothing_is_wrapped():
    got = []

    def body():
        with interrupts.sticky():
            got.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert got == [signal.getsignal(signal.SIGINT)]
