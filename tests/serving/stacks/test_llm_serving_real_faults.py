"""The real llm-serving losing a process mid-replay (issue 27): a killed agent is noticed at once,
not after the request timeout; a killed agent launcher whose agents serve on is not a crash."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import optuna
import psutil
import pytest

from tests.serving.stacks.real_llm_serving import STUDY, require_real
from tests.serving.stacks.test_llm_serving_real import assert_cleaned_up, tune
from tuner.runtime.constraints import is_feasible

pytestmark = pytest.mark.xdist_group("llm_serving_real")


def kill_when_streaming(project_root: Path, pick, done: threading.Event, at: dict) -> None:
    """Once the replay's streams reach the server, SIGKILL the process ``pick`` chooses in the agent's group."""
    end = time.monotonic() + 600
    while time.monotonic() < end and not done.is_set():
        run = next((project_root / "trials").glob(f"{STUDY}-*/0"), project_root / "missing")
        log = run / "server.log"
        if (run / "pids.json").exists() and log.exists() and log.read_text().count("generate_stream") >= 3:
            leader = psutil.Process(json.loads((run / "pids.json").read_text())["agent"])
            victim = pick(leader)
            os.kill(victim.pid, signal.SIGKILL)
            at["t"], at["pid"] = time.monotonic(), victim.pid
            return
        time.sleep(0.05)


def run_with_killer(project_root: Path, pick, *overrides: str):
    done, at = threading.Event(), {}
    th = threading.Thread(target=kill_when_streaming, args=(project_root, pick, done, at), daemon=True)
    th.start()
    try:
        [t] = tune(project_root, *overrides)
    finally:
        done.set()
        th.join(5)
    assert "t" in at, "nothing was killed"
    return t, time.monotonic() - at["t"], at["pid"]


def test_a_killed_agent_ends_the_replay_at_once(project_root):
    require_real()
    # the agent process that runs the model (the launcher's child), not the launcher
    t, after, pid = run_with_killer(project_root, lambda leader: leader.children()[0],
                                    "load.duration=6", "load.request_timeout=60")
    a = t.user_attrs
    print(f"\nkilled agent {pid}: tune returned {after:.1f} s later (load {os.getloadavg()[0]:.2f})")
    assert a["fail_class"] == "crash_during_replay", a.get("fail_detail")
    assert f"pid {pid}" in a["fail_detail"] and "no request progressed" in a["fail_detail"]
    assert after < 45, f"the hung requests were waited out ({after:.1f} s; request timeout 60 s)"
    assert_cleaned_up(Path(a["run_dir"]))


def test_a_killed_launcher_whose_agents_serve_on_is_measured(project_root):
    require_real()
    t, after, pid = run_with_killer(project_root, lambda leader: leader, "load.duration=4")
    a = t.user_attrs
    assert a["requests_ok"] == a["requests"], a.get("fail_detail")   # the agents served every request
    assert t.state == optuna.trial.TrialState.COMPLETE and is_feasible(t), (a.get("fail_class"), a.get("fail_detail"))
    assert "fail_class" not in a
    assert_cleaned_up(Path(a["run_dir"]))
