"""Failures of the host are not failures of the configuration (issue 27): a stack the host cannot
start stops the study with one line and exit 2, a port taken meanwhile relaunches the stack and
re-queues the trial, a dead stack ends the replay at once, a stack that kept serving is measured.
Faults come from the faulty stack (tests/tuner/faulty_stack.py), real processes misbehaving."""
import logging
import os
import time
from pathlib import Path

import optuna
import pytest

from serving.stacks import register_stack
from tests.tuner.study.test_rigour_faults import FAST
from tuner.cli import main
from tuner.runtime.constraints import is_feasible
from tuner.space.compose import load_space
from tuner.study.run import StudyRun

STUDY = "pa_faults"


@pytest.fixture
def faulty(monkeypatch):
    register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")
    return lambda kind: monkeypatch.setenv("FAULTY_FAULT", kind)


def study_of(root: Path, storage: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=storage)


def test_a_module_missing_at_start_stops_the_study_with_one_line(project_root, faulty, capfd):
    faulty("import_error")
    storage = f"sqlite:///{project_root / 'trials' / 'host.db'}"
    t0 = time.monotonic()
    rc = main(["--study", "pa_batching", "--root", str(project_root), "--storage", storage, "--no-progress",
               "n_trials=4", *FAST])
    took = time.monotonic() - t0
    err = capfd.readouterr().err
    print(f"broken setup to the exit-2 line: {took:.1f} s (load {os.getloadavg()[0]:.2f})")
    assert rc == 2
    assert "Traceback" not in err and "Trial 0 failed" not in err, err
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("tune: error: faulty: the host cannot start the faulty stack, whatever its configuration: "
                           "ModuleNotFoundError: No module named 'faulty_server_no_such_module'"), line
    # nothing taught to the sampler: the one trial tried is FAIL, its configuration queued for when the host is fixed
    first, retry = study_of(project_root, storage).trials
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["fail_class"] == "host_setup"
    assert retry.state == optuna.trial.TrialState.WAITING and retry.user_attrs["retry_of"] == 0
    assert retry.system_attrs["fixed_params"] == first.params


def test_a_port_taken_at_launch_relaunches_on_fresh_ports(project_root, faulty):
    faulty("port_once")
    space = load_space("pa_batching", project_root, FAST)
    [t] = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials' / 'p.db'}").run(1).trials
    assert t.state == optuna.trial.TrialState.COMPLETE and is_feasible(t), t.user_attrs.get("fail_detail")
    run = Path(t.user_attrs["run_dir"])
    assert "address already in use" in (run / "engine.log.try1").read_text().lower()


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_a_port_always_taken_is_fail_requeued_without_a_traceback(project_root, faulty):
    faulty("port_in_use")
    seen = Records()
    logging.getLogger("optuna.study._optimize").addHandler(seen)   # what optuna's own handler would print
    space = load_space("pa_batching", project_root, FAST)
    study = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials' / 'p.db'}").run(1)
    first, retry = study.trials
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["fail_class"] == "port_in_use"
    assert sorted(p.name for p in Path(first.user_attrs["run_dir"]).glob("engine.log*")) == [
        "engine.log", "engine.log.try1", "engine.log.try2"]
    assert retry.state == optuna.trial.TrialState.WAITING and retry.user_attrs["retry_of"] == 0
    logging.getLogger("optuna.study._optimize").removeHandler(seen)
    logged = [r for r in seen.records if "Trial 0 failed" in r.getMessage()]
    assert logged and not any(r.exc_info for r in logged)   # one line each, no traceback
    again = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials' / 'p.db'}").run(1)
    assert len(again.trials) == 2 and "requeued" not in again.trials[1].user_attrs   # re-queued once, not forever


def test_a_dead_worker_ends_the_replay_at_once(project_root, faulty):
    faulty("worker_dies")
    space = load_space("pa_batching", project_root, [*FAST, "load.request_timeout=60", "timeouts.replay=120"])
    t0 = time.monotonic()
    [t] = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials' / 'w.db'}").run(1).trials
    took = time.monotonic() - t0
    a = t.user_attrs
    assert a["fail_class"] == "crash_during_replay" and not is_feasible(t), a.get("fail_detail")
    assert "died and no request progressed for 3 s" in a["fail_detail"] and "time.sleep(3600)" in a["fail_detail"]
    assert took < 40, f"the hung requests were waited out: {took:.1f} s (load {os.getloadavg()[0]:.2f})"


def test_a_stack_that_kept_serving_is_not_crashed(project_root, faulty):
    faulty("launcher_dies")
    space = load_space("pa_batching", project_root, FAST)
    [t] = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials' / 'l.db'}").run(1).trials
    a = t.user_attrs
    assert "killing the launcher" in (Path(a["run_dir"]) / "engine.log").read_text()
    assert t.state == optuna.trial.TrialState.COMPLETE and is_feasible(t), (a.get("fail_class"), a.get("fail_detail"))
    assert a["requests_ok"] == a["requests"] > 3
