"""An engine compute thread that dies anyway takes the server down with one clear log line, so
the trial ends as a crash instead of every later request hanging."""
import json
import subprocess
import sys
import time
import urllib.request

import pytest

from serving.procs.groups import group_alive

# The real server, with the engine's step made to fail on the first request (a fault the request
# checks cannot catch: a bug, an out-of-memory in the model).
DIES = """
import sys
from serving.engine import engine, server
def broken(self):
    raise FloatingPointError("injected: the step produced NaN")
engine.LLMEngine.step = broken
sys.exit(server.main(sys.argv[1:]))
"""


def test_a_dead_engine_thread_stops_the_server_with_one_line(tiny_config, tmp_path):
    port_file = tmp_path / "port"
    log = tmp_path / "engine.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", DIES, "--config", str(tiny_config), "--port-file", str(port_file)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            if port_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/models/llama2/generate"
        req = urllib.request.Request(url, data=json.dumps({"inputs": "a b c", "parameters": {"max_new_tokens": 3}}).encode())
        with urllib.request.urlopen(req, timeout=30) as resp:  # the open request is failed, not left hanging
            out = json.loads(resp.read())
        assert out["finish_reason"] == "predict_failed"
        assert proc.wait(timeout=30) == 1                      # the server went down by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [x for x in log.read_text().splitlines() if "compute thread died" in x]
    assert len(lines) == 1 and "FloatingPointError: injected" in lines[0] and "server stops" in lines[0]
    assert "Traceback" not in log.read_text()
    assert not group_alive(proc.pid)
