"""Test-only Stack: the embedded stack with a fault chosen by trial number.

Registered for a test with ``register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")``
and chosen with ``backend=faulty``. Trial n gets FAULTS[n % len(FAULTS)]; every
fault is a real process misbehaving, so the tuner's own classification is what is tested.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from serving.stacks.base import LaunchSpec
from serving.stacks.embedded import EmbeddedRunning, EmbeddedStack, start_server

SERVER = Path(__file__).with_name("faulty_server.py")
FAULTS = ["ok", "crash", "oom", "hang", "port_in_use", "garbage"]
EXPECTED = {"ok": None, "crash": "crash_during_replay", "oom": "oom", "hang": "hang",
            "port_in_use": "port_in_use", "garbage": "bad_response"}


def fault_for(run_dir: Path) -> str:
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
