"""Stop signals unwind like Ctrl-C, so whatever a command started is stopped by its ``finally``.

Python's default for SIGTERM and SIGHUP is to die at once, skipping every ``finally``: a closed
terminal (HUP) or a process manager (TERM) would leave the running trial's stack behind. Here
INT, TERM and HUP raise ``StopSignal`` (a KeyboardInterrupt) in the main thread. The first one
wins: later ones are ignored until the context exits, so a second signal cannot cut the clean-up
short (SIGKILL still ends everything; the next command then ends the orphans it can prove are
its own).

A signal handler runs wherever the main thread happens to be, and when that is a finaliser or a
weakref callback (the garbage collector, aiohttp's and asyncio's clean-ups) Python drops the
exception with an "Exception ignored in" note, and the command would go on as if never told to
stop. The unraisable hook below sees exactly that exception and has the signal sent again to the
main thread 10 ms later (by then the finaliser has ended), so it is raised in ordinary code.
"""
from __future__ import annotations

import _thread
import signal
import sys
import threading
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "StopSignal", "stop_signals_interrupt", "sigterm_as_interrupt"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_HANDLED = (signal.SIGINT, *STOP_SIGNALS)


class StopSignal(KeyboardInterrupt):
    """A stop signal, raised in the main thread as Ctrl-C is."""


class _State:
    raised: int | None = None       # the signal being unwound; later ones are ignored


def _handler(signum, frame):
    if _State.raised is not None:
        return  # the first stop signal is unwinding: let its clean-up finish
    _State.raised = signum
    raise StopSignal(signal.Signals(signum).name)


def _unraisable(args) -> None:
    """Python dropped our StopSignal (raised inside a finaliser): raise it again at the next line."""
    if isinstance(args.exc_value, StopSignal) and _State.raised is not None:
        signum, _State.raised = _State.raised, None
        # from another thread a moment later: raised here, it would be dropped again (inside this hook)
        threading.Timer(0.01, _deliver_again, args=(signum,)).start()
        return
    _previous_hook(args)


def _deliver_again(signum: int) -> None:
    """A real signal to the main thread (it wakes a blocking sleep or select, which
    _thread.interrupt_main does not), while our handler still holds it."""
    if signal.getsignal(signum) is not _handler:
        return
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signum)
    else:
        _thread.interrupt_main(signum)


_previous_hook = sys.unraisablehook


@contextmanager
def stop_signals_interrupt():
    global _previous_hook
    # a context inside another (the CLI's around a study's) leaves the outer one's set-up alone
    if threading.current_thread() is not threading.main_thread() or sys.unraisablehook is _unraisable:
        yield
        return
    # one ignored on purpose stays ignored (`nohup tune ...` must survive its terminal closing)
    old = {sig: signal.signal(sig, _handler) for sig in _HANDLED if signal.getsignal(sig) != signal.SIG_IGN}
    _State.raised = None
    _previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        yield
    finally:
        sys.unraisablehook = _previous_hook
        for sig, h in old.items():
            signal.signal(sig, h)
        _State.raised = None


sigterm_as_interrupt = stop_signals_interrupt  # the earlier name: SIGHUP is handled the same way now
