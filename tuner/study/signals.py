"""Stop signals unwind like Ctrl-C, so whatever a command started is stopped by its ``finally``.

Python's default for SIGTERM and SIGHUP is to die at once, skipping every ``finally``: a closed
terminal (HUP) or a process manager (TERM) would leave the running trial's stack behind. Here
both raise KeyboardInterrupt in the main thread, like SIGINT. The first one wins: later TERM/HUP
are ignored until the context exits, so a second signal cannot cut the clean-up short (SIGKILL
still ends everything; the next command then ends the orphans it can prove are its own).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "stop_signals_interrupt", "sigterm_as_interrupt"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_signals_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # one ignored on purpose stays ignored (`nohup tune ...` must survive its terminal closing)
    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


sigterm_as_interrupt = stop_signals_interrupt  # the earlier name: SIGHUP is handled the same way now
