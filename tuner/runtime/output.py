"""Printing that never costs a measurement: ``tune ... | head -1`` closes stdout under a running study.

A write to a closed pipe raises BrokenPipeError (Python ignores SIGPIPE); it must not fail the
trial whose result was being printed. The first failed write points the stream's descriptor at
/dev/null, so every later write, and the flush at interpreter exit, succeeds silently.
"""
from __future__ import annotations

import os
import sys

OUTPUT_ERRORS = (OSError, ValueError)  # ValueError: a write to a closed file object


def silence(stream) -> None:
    """Send a broken stream's later output to /dev/null (its descriptor, so the exit flush is quiet too)."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def silence_broken() -> None:
    """Silence whichever of stdout and stderr can no longer be written."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OUTPUT_ERRORS:
            silence(stream)


def safe_print(*args, file=None, **kw) -> bool:
    """print(..., flush=True) that swallows a closed output; False when nothing could be written."""
    stream = file or sys.stdout
    try:
        print(*args, file=stream, flush=True, **kw)
        return True
    except OUTPUT_ERRORS:
        silence(stream)
        return False
