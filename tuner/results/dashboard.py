"""`tune dashboard`: optuna-dashboard on 127.0.0.1 for the study's storage.

Started from an argument list in its own process group (serving.procs.process), stopped by
that group only; tagged with its owner so a SIGKILLed ``tune dashboard`` leaves nothing for good. Its URL points straight at the study.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path


from serving.procs.process import ManagedProcess
from tuner.runtime.ownership import TAG_ENV, command_tag
from tuner.study.signals import stop_signals_interrupt
from tuner.study.storage import dashboard_args, open_storage

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def command(storage_url: str, port: int) -> list[str]:
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")
    if exe is None:
        raise RuntimeError("optuna-dashboard is not installed (pip install optuna-dashboard)")
    return [exe, *dashboard_args(storage_url), "--host", HOST, "--port", str(port), "--quiet"]


def study_url(base: str, storage_url: str, study_name: str) -> str:
    study_id = open_storage(storage_url).get_study_id_from_name(study_name)
    return f"{base}/dashboard/studies/{study_id}"


def start(storage_url: str, log_path: Path, port: int = 0, timeout: float = 30.0,
          env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    """Start the dashboard (``env`` added to its environment: the owner's tag); (process, base URL)
    once it answers."""
    port = port or free_port()
    proc = ManagedProcess(command(storage_url, port), log_path, env={**os.environ, **(env or {})})
    base = f"http://{HOST}:{port}"
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not proc.alive():
                raise RuntimeError(f"optuna-dashboard exited: {proc.log_tail(1500)}")
            try:
                with urllib.request.urlopen(base + "/api/studies", timeout=1) as resp:
                    if resp.status == 200:
                        return proc, base
            except OSError:
                time.sleep(0.2)
    except BaseException:  # a signal while it starts: nothing is left behind
        proc.stop()
        raise
    proc.stop()
    raise RuntimeError(f"optuna-dashboard did not answer within {timeout:g} s: {proc.log_tail(1500)}")


def serve(storage_url: str, study_name: str, log_path: Path, port: int = 0) -> int:
    """Foreground: print the URL, wait for Ctrl-C (or SIGTERM, SIGHUP), stop the dashboard.

    The dashboard carries the study's tag with our owner id: if we are SIGKILLed, the next tune
    command on the study (tune dashboard again, too) ends it (tuner.study.resume.end_orphans)."""
    proc, base = start(storage_url, log_path, port, env={TAG_ENV: command_tag(study_name, "dashboard")})
    try:
        with stop_signals_interrupt():
            print(f"optuna-dashboard: {study_url(base, storage_url, study_name)}", flush=True)
            print("press Ctrl-C to stop it", flush=True)
            while proc.alive():
                time.sleep(0.5)
        print(f"optuna-dashboard exited: {proc.log_tail(800)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        proc.stop()
