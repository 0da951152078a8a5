"""No process outlives the command that started it: real signals to real ``tune`` subprocesses,
then psutil checks that no process tagged for the study is left, and that no measurement is lost."""
import os
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest

from serving.procs.groups import end_group, group_alive
from tuner.runtime.ownership import tagged_groups
from tuner.study.storage import open_storage

FAST = ["load.qps=20", "load.duration=1", "sampler=random", "params.pa_config.num_blocks.low=256",
        "params.model_config.decode_batch_size.choices=[8,16]"]


def tune(project_root: Path, *args: str, **popen) -> subprocess.Popen:
    popen.setdefault("stdout", subprocess.DEVNULL)
    err = popen.setdefault("stderr", tempfile.TemporaryFile())   # read by interrupted() when a test fails
    # SIGHUP and SIGINT as a terminal's session has them, even when the tests themselves run under
    # `nohup` or as a background job of a shell without job control (which ignores SIGINT)
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", *args, "--root", str(project_root)],
                            start_new_session=True, preexec_fn=_terminal_signals, **popen)
    proc.err_file = err
    _STARTED.append(proc)
    return proc


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_orphans():
    """A command a failing test left running (a stop it did not obey) is killed with its session."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def interrupted(proc: subprocess.Popen) -> bool:
    """The command ended as a stop signal ends it (exit 130); else fail with its exit status and stderr."""
    rc = proc.wait(timeout=60)
    err = getattr(proc, "err_file", None)
    if rc != 130 and hasattr(err, "seek"):
        err.seek(0)
        raise AssertionError(f"exit {rc}, not 130; stderr: {err.read()[-2000:]!r}")
    return rc == 130


def _terminal_signals() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(cond, proc: subprocess.Popen, what: str, limit: float = 120.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"tune exited ({proc.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def cleanup():
    """Whatever a failing test left tagged for its study is ended, so one failure does not leak."""
    studies = []
    yield studies.append
    for study in studies:
        for pgid in tagged_groups(study):
            end_group(pgid, grace=1)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_tune_ends_the_trials_stack_and_requeues_it(project_root, cleanup, sig):
    study = f"sig_run_{sig.name.lower()}"
    cleanup(study)
    storage = f"sqlite:///{project_root / 'trials' / 'sig.db'}"
    # a 60 s replay: on a loaded machine the test may see the stack's pgid file late, and the signal must
    # still find trial 0 running (with a 1 s replay all 3 trials could end first); the signal ends it at once
    proc = tune(project_root, "run", "--storage", storage, "--no-progress", "--n-trials", "3", *FAST,
                "load.duration=60", f"study={study}")
    def pgid_file():  # trials/<study>-<uid8>/0/: the folder is named once the study exists
        return next((project_root / "trials").glob(f"{study}-*/0/stack.pgid"), project_root / "missing")
    wait_for(lambda: pgid_file().exists(), proc, "trial 0's stack came up")
    stack = int(pgid_file().read_text().split()[0])
    os.kill(proc.pid, sig)
    assert interrupted(proc)
    assert not group_alive(stack) and tagged_groups(study) == {}
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL and trials[0].user_attrs["fail_class"] == "interrupted"
    assert trials[1].state == optuna.trial.TrialState.WAITING and trials[1].user_attrs["retry_of"] == 0


@pytest.mark.parametrize("command, extra", [
    ("bare-run", []),
    ("profile", ["-c", "2", "-pt", "8", "-ct", "32", "-tr", "200", "-w", "0"]),
])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_to_bare_run_or_profile_ends_its_engine(project_root, cleanup, command, extra, sig):
    study = f"sig_{command.replace('-', '')}_{sig.name.lower()}"
    cleanup(study)
    proc = tune(project_root, command, *extra, *FAST, f"study={study}")
    groups = wait_for(lambda: tagged_groups(study), proc, f"{command} started its engine")
    time.sleep(1.0)  # into its replay (a signal while the engine starts must leave nothing either)
    os.kill(proc.pid, sig)
    assert interrupted(proc)
    assert tagged_groups(study) == {} and not any(group_alive(g) for g in groups)


def make_study(storage: str, study: str) -> None:
    s = optuna.create_study(study_name=study, storage=storage)
    s.add_trial(optuna.trial.create_trial(params={"x": 1.0}, distributions={"x": optuna.distributions.FloatDistribution(0, 2)},
                                          value=1.0))


def test_a_killed_tune_dashboard_takes_its_dashboard_with_it(project_root, cleanup):
    study = "sig_dash"
    cleanup(study)
    storage = f"sqlite:///{project_root / 'trials' / 'dash.db'}"
    make_study(storage, study)
    args = ["dashboard", "--storage", storage, f"study={study}"]
    first = tune(project_root, *args, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().startswith("optuna-dashboard: http://127.0.0.1:")
    [orphan] = tagged_groups(study)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    end = time.monotonic() + 20    # the dashboard's watcher ends it with the dead command (serving.procs.reaper)
    while group_alive(orphan) and time.monotonic() < end:
        time.sleep(0.1)
    assert not group_alive(orphan), "optuna-dashboard outlived the SIGKILLed tune dashboard"
    second = tune(project_root, *args, stdout=subprocess.PIPE, text=True)
    try:
        assert second.stdout.readline().startswith("optuna-dashboard: http://127.0.0.1:")
        assert list(tagged_groups(study)) != [orphan]
    finally:
        second.send_signal(signal.SIGHUP)
        assert second.wait(timeout=30) == 0
    assert tagged_groups(study) == {}


def test_workers_of_a_killed_parent_finish_their_trial_store_it_and_stop(project_root, cleanup):
    study = "sig_orphan_workers"
    cleanup(study)
    storage = f"journal:{project_root / 'trials' / 'orphans.log'}"
    parent = tune(project_root, "run", "--storage", storage, "--devices", "0,1", "--n-trials", "8", "--no-progress",
                  *FAST, f"study={study}", stdout=subprocess.PIPE)
    def both_up():  # both workers listed and one of them inside a trial (its stack tagged)
        kids = psutil.Process(parent.pid).children()
        return kids if len(kids) == 2 and tagged_groups(study) else None

    workers = wait_for(both_up, parent, "both workers up and a trial's stack started")
    os.kill(parent.pid, signal.SIGKILL)   # the workers' stdout pipes now have no reader
    parent.wait()
    parent.stdout.close()
    gone, alive = psutil.wait_procs(workers, timeout=240)
    for p in alive:  # a worker that runs on unsupervised fails the test, and is not left behind
        os.killpg(p.pid, signal.SIGTERM)
    assert not alive, "workers of a SIGKILLed parent kept running"
    assert tagged_groups(study) == {}
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    finished = [t for t in trials if t.state != optuna.trial.TrialState.WAITING]
    assert len(trials) < 8, "the workers ran all their trials unsupervised instead of stopping"
    assert finished and all(t.state == optuna.trial.TrialState.COMPLETE for t in finished), \
        [(t.number, t.state.name, t.user_attrs.get("fail_class"), t.user_attrs.get("fail_detail")) for t in trials]


@pytest.fixture
def terminal_hup():
    """SIGHUP as a terminal's session has it, even when the tests run under `nohup`; put back after."""
    started = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, started)


def test_hup_and_term_raise_keyboard_interrupt_once_and_nohup_is_respected(terminal_hup):
    from tuner.study.signals import stop_signals_interrupt
    with pytest.raises(KeyboardInterrupt, match="SIGHUP"):
        with stop_signals_interrupt():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
            pytest.fail("SIGHUP did not interrupt")
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)   # as `nohup tune ...` starts it
    try:
        with stop_signals_interrupt():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)                               # still here: an ignored HUP stays ignored
            with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            for sig in (signal.SIGTERM, signal.SIGINT):       # a second signal cannot cut the clean-up short
                os.kill(os.getpid(), sig)
                time.sleep(0.2)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


class _RaisesInItsFinaliser:
    """Gets the stop signal while its __del__ runs: the handler's exception lands in the finaliser."""
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100_000):  # the handler runs between these bytecodes, inside __del__
            pass


def test_a_stop_signal_raised_inside_a_finaliser_is_raised_again_in_ordinary_code():
    # Python drops an exception raised in a finaliser or weakref callback ("Exception ignored in"):
    # a SIGTERM landing there (the garbage collector runs them anywhere) used to be lost, and tune
    # went on measuring as if never told to stop
    from tuner.study.signals import StopSignal, stop_signals_interrupt
    with stop_signals_interrupt():
        with pytest.raises(StopSignal, match="SIGTERM"):
            _RaisesInItsFinaliser()     # no reference kept: __del__ runs at once
            time.sleep(2)
            pytest.fail("the SIGTERM the finaliser swallowed was never raised")
