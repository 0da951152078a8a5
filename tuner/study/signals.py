"""Signals that end a command like Ctrl-C does, so every ``finally`` (a trial's stack) runs."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["sigterm_as_interrupt"]


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM unwinds like Ctrl-C, so the running trial's stack is stopped by its ``finally``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
