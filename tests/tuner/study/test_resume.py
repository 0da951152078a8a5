"""Resume: a SIGKILLed tune leaves a RUNNING trial and a running stack; the next tune fails
the trial (worker_died), ends the stack's process group, re-queues the configuration, and
keeps every completed trial."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from serving.procs.groups import end_group, group_alive
from tuner.runtime.ownership import owner_alive, owner_id, tagged_groups
from tuner.study.resume import fail_dead_trials
from tuner.study.storage import open_storage, requeue

STUDY = "pa_kill"
ARGS = ["--study", "pa_batching", "--no-progress", "load.qps=20", "load.duration=2", f"study={STUDY}",
        "params.pa_config.num_blocks.low=256", "params.model_config.decode_batch_size.choices=[8,16]"]


def test_owner_identity_survives_pid_reuse_and_other_hosts():
    me = owner_id()
    assert owner_alive(me) is True
    host, pid, start = me.rsplit(":", 2)
    assert owner_alive(f"{host}:{pid}:{int(start) + 100}") is False  # same pid, another process
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert owner_alive(f"{host}:{p.pid}:1") is False                   # exited
    assert owner_alive(f"some-other-host:{pid}:{start}") is None       # only heartbeats can tell


def _running_trial(study, owner: str | None):
    t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    if owner:
        t.set_user_attr("owner", owner)
    return t


@pytest.mark.filterwarnings("ignore:Heartbeat of storage", "ignore::optuna.exceptions.ExperimentalWarning")
def test_dead_and_stale_trials_are_failed_live_ones_kept(tmp_path):
    # the storage open_storage makes, with a one-second grace period instead of a minute
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1,
                                         heartbeat_stale_trial_callback=requeue)
    study = optuna.create_study(study_name="s", storage=storage)
    host, pid, start = owner_id().rsplit(":", 2)
    dead = _running_trial(study, f"{host}:{pid}:{int(start) + 100}")
    live = _running_trial(study, owner_id())
    remote = _running_trial(study, "elsewhere:1:1")
    storage.record_heartbeat(remote._trial_id)   # a worker on another host beat once, then went silent
    time.sleep(2.5)
    assert sorted(fail_dead_trials(study)) == sorted([dead.number, remote.number])
    states = {t.number: t for t in study.trials}
    assert states[dead.number].state == optuna.trial.TrialState.FAIL
    assert states[dead.number].user_attrs["fail_class"] == "worker_died"
    assert states[remote.number].state == optuna.trial.TrialState.FAIL
    assert states[live.number].state == optuna.trial.TrialState.RUNNING
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in queued] == [dead.number, remote.number]
    assert fail_dead_trials(study) == []  # idempotent


def test_sigkilled_tune_resumes_without_orphans_or_lost_trials(project_root):
    storage = f"sqlite:///{project_root / 'trials' / 'kill.db'}"
    base = [sys.executable, "-m", "tuner.cli", "run", "--root", str(project_root), "--storage", storage, *ARGS]
    tune = subprocess.Popen([*base, "--n-trials", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    def pgid_file():  # trials/<study>-<uid8>/1/: the folder is named once the study exists
        return next((project_root / "trials").glob(f"{STUDY}-*/1/stack.pgid"), project_root / "missing")
    try:
        end = time.monotonic() + 60
        while not pgid_file().exists() and time.monotonic() < end and tune.poll() is None:
            time.sleep(0.05)
        assert pgid_file().exists(), "trial 1 never started its stack"
        os.kill(tune.pid, signal.SIGKILL)  # mid-replay of trial 1; trial 0 is complete
        tune.wait()
        stack_pgid = int(pgid_file().read_text().split()[0])
        end = time.monotonic() + 20     # its watcher ends the stack of the dead tune (serving.procs.reaper)
        while group_alive(stack_pgid) and time.monotonic() < end:
            time.sleep(0.1)
        assert not group_alive(stack_pgid), "the stack outlived the SIGKILLed tune"

        from tuner.cli import main
        assert main(["run", "--root", str(project_root), "--storage", storage, *ARGS, "--n-trials", "1"]) == 0
    finally:
        if pgid_file().exists() and group_alive(int(pgid_file().read_text().split()[0])):
            end_group(int(pgid_file().read_text().split()[0]))
    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
    by_number = {t.number: t for t in study.trials}
    assert by_number[0].state == optuna.trial.TrialState.COMPLETE          # nothing completed is lost
    assert by_number[1].state == optuna.trial.TrialState.FAIL
    assert by_number[1].user_attrs["fail_class"] == "worker_died"
    retry = by_number[2]                                                    # the same configuration again
    assert retry.user_attrs["retry_of"] == 1 and retry.params == by_number[1].params
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert tagged_groups(STUDY) == {}
    assert Path(by_number[1].user_attrs["run_dir"]).name == "1"


def test_interrupted_trial_is_failed_and_measured_again_next_time(project_root, monkeypatch):
    from tuner.cli import main
    from tuner.runtime.trial import TrialOutcome
    calls = []

    def run_trial(ctx, params, stop=None, replays=1):
        calls.append(params)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM turned into it, mid-replay
        return TrialOutcome(metrics={"total_time": 1.0, "utilisation": 50.0})

    monkeypatch.setattr("tuner.runtime.measure.run_trial", run_trial)
    storage = f"sqlite:///{project_root / 'trials' / 'int.db'}"
    args = ["run", "--root", str(project_root), "--storage", storage, "--no-progress", "--n-trials", "1"]
    assert main(args) == 130
    assert main(args) == 0
    study = optuna.load_study(study_name="pa_batching", storage=open_storage(storage))
    first, again = study.trials
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["fail_class"] == "interrupted"
    assert again.state == optuna.trial.TrialState.COMPLETE and again.user_attrs["retry_of"] == 0
    assert calls[0] == calls[1] == first.user_attrs["config"]
