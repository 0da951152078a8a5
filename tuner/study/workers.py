"""Several tune workers on one study: ``tune --devices 0,1`` starts one worker per device.

Each worker is a plain ``tune run --device D`` process sharing the study's storage, which is
how workers on other hosts join too (same command, an RDB URL or a shared journal file).
Optuna hands each worker its own trial numbers; the sampler sees every worker's results.
Workers run in their own process groups so a Ctrl-C (or SIGTERM, SIGHUP) here is turned into a
SIGTERM to each, and each stops its running stack before it exits. If this process is SIGKILLed,
each worker notices its dead parent after its running trial and stops (stored as measured).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tuner.runtime.ownership import owner_id
from tuner.runtime.output import safe_print


def split(n_trials: int, n_workers: int) -> list[int]:
    """Trials per worker, as even as possible, the remainder to the first ones."""
    base, extra = divmod(n_trials, n_workers)
    return [base + (i < extra) for i in range(n_workers)]


def parse_devices(text: str) -> list[int]:
    try:
        devices = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise ValueError(f"--devices takes ids separated by commas (e.g. 0,1), got {text!r}") from None
    if not devices or len(set(devices)) != len(devices):
        raise ValueError(f"--devices needs distinct ids, got {text!r}")
    return devices


def _pump(proc: subprocess.Popen, prefix: str) -> None:
    """Copy a worker's lines to our stdout; if that is closed (``| head``), keep reading and drop
    them, so the worker never blocks on a full pipe."""
    shown = True
    for line in proc.stdout:
        if shown:
            shown = safe_print(prefix + line, end="")


def worker_args(space_file: str, root: Path, storage: str, device: int, n: int, overrides: list[str]) -> list[str]:
    """A worker is a plain ``tune run`` told who its parent is: if we die, even by SIGKILL, it stops
    after the trial it is running (tuner.study.run.StudyRun._orphaned)."""
    return [sys.executable, "-m", "tuner.cli", "run", "--study", space_file, "--root", str(root), "--storage", storage,
            "--device", str(device), "--n-trials", str(n), "--no-progress", "--parent", owner_id(), *overrides]


def run_workers(space_file: str, root: Path, storage: str, devices: list[int], n_trials: int,
                overrides: list[str]) -> int:
    """Run the workers to the end; the worst exit status."""
    procs: list[tuple[subprocess.Popen, threading.Thread]] = []
    for device, n in zip(devices, split(n_trials, len(devices))):
        if n == 0:
            continue
        p = subprocess.Popen(worker_args(space_file, root, storage, device, n, overrides), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                             start_new_session=True)
        t = threading.Thread(target=_pump, args=(p, f"[device {device}] "), daemon=True)
        t.start()
        procs.append((p, t))
    try:
        codes = [p.wait() for p, _ in procs]
    except KeyboardInterrupt:
        for p, _ in procs:  # each worker stops its trial's stack, then exits
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        codes = [p.wait() for p, _ in procs]
        raise
    finally:
        for _, t in procs:
            t.join(timeout=5)
    return max(codes, default=0)
