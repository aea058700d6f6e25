"""Ctrl-C and SIGTERM that cannot be lost.

Python runs a signal's handler in the main thread between two bytecodes, wherever that
thread is. When it is inside an ``os.fork`` at-fork hook (logging registers one, and a
``subprocess`` with ``preexec_fn`` runs them too) or inside a finalizer, the
KeyboardInterrupt the handler raises is printed as "Exception ignored" and dropped. The
runners fork a child per shard and start asv per preset, so a Ctrl-C that landed on a fork
let a sharded run go on to the end as if nothing had happened (seen in
tests/test_runner.py: the Ctrl-C came as the third shard was forked).

:func:`sticky` wraps the handlers of the signals that already raise (SIGINT's default
handler, a runner's SIGTERM handler) so that they first note the signal;
:func:`check` raises KeyboardInterrupt if one was noted, so a loop that calls it after each
fork or process sees the interrupt that was swallowed. Standard library only.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_NOTED: list[int] = []


def _noting(handler):
    def note_then_handle(signum, frame):
        _NOTED.append(signum)
        return handler(signum, frame)

    return note_then_handle


@contextlib.contextmanager
def sticky(signals=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, every signal of ``signals`` whose handler is a Python function (it
    raises, as SIGINT's default does) is noted before it is handled. Ignored and default
    (kill) dispositions stay as they are. Outside the main thread: nothing to wrap."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in signals:
        handler = signal.getsignal(sig)
        if callable(handler):
            previous[sig] = signal.signal(sig, _noting(handler))
    _NOTED.clear()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _NOTED.clear()


def check() -> None:
    """Raise KeyboardInterrupt if a signal was noted in the current :func:`sticky` block:
    its own KeyboardInterrupt may have been dropped where Python ignores exceptions."""
    if _NOTED:
        raise KeyboardInterrupt(f"signal {_NOTED[-1]}")
