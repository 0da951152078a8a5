"""Test-only Stack: the embedded stack with a fault chosen by trial number.

Registered for a test with ``register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")``
and chosen with ``backend=faulty``. Trial n gets FAULTS[n % len(FAULTS)]; every
fault is a real process misbehaving, so the tuner's own classification is what is tested.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from serving.stacks.base import LaunchSpec
from serving.stacks.embedded import EmbeddedRunning, EmbeddedStack, start_server

SERVER = Path(__file__).with_name("faulty_server.py")
FAULTS = ["ok", "crash", "oom", "hang", "port_in_use", "garbage"]
EXPECTED = {"ok": None, "crash": "crash_during_replay", "oom": "oom", "hang": "hang",
            "port_in_use": "port_in_use", "garbage": "bad_response"}


# More faults, chosen for every trial by FAULTY_FAULT in the test's environment (faulty_server's modes):
#   import_error   the server fails at import (a module the interpreter lacks): the host's fault
#   port_once      the first launch of a trial finds its port taken, a relaunch does not
#   worker_dies    the server's worker process dies after 3 requests; the server holds the rest open
#   launcher_dies  the server's launcher dies after 3 requests; the server it started serves on
EXTRA = ["import_error", "port_once", "worker_dies", "launcher_dies"]


def fault_for(run_dir: Path) -> str:
    if os.environ.get("FAULTY_FAULT"):
        return os.environ["FAULTY_FAULT"]
    name = Path(run_dir).name
    return FAULTS[int(name) % len(FAULTS)] if name.isdigit() else "ok"


class FaultyStack(EmbeddedStack):
    name = "faulty"

    def launch(self, spec: LaunchSpec) -> EmbeddedRunning:
        kind = fault_for(spec.run_dir)
        host = "127.0.0.1"
        port_file = Path(spec.run_dir) / "port"
        port_file.unlink(missing_ok=True)
        (Path(spec.run_dir) / "fault").write_text(kind)
        holder = None
        if kind == "port_once":   # taken at the first launch of this run folder only
            kind = "ok" if (Path(spec.run_dir) / "launched").exists() else "port_in_use"
            (Path(spec.run_dir) / "launched").touch()
        if kind == "port_in_use":  # someone else listens on the port the real server is told to use
            holder = socket.socket()
            holder.bind((host, 0))
            holder.listen()
            args = [sys.executable, "-m", "serving.engine.server", "--config", str(spec.config_path),
                    "--host", host, "--port", str(holder.getsockname()[1]), "--port-file", str(port_file)]
        else:
            args = [sys.executable, str(SERVER), "--mode", kind, "--config", str(spec.config_path),
                    "--host", host, "--port", "0", "--port-file", str(port_file)]
        try:
            return start_server(args, spec, host, port_file)
        finally:
            if holder:
                holder.close()
