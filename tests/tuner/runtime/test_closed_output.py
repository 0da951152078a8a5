"""Printing progress never costs a measurement: ``tune ... | head -1`` closes the output under a
running study; every trial still ends COMPLETE, the study goes on, and no traceback is printed."""
import subprocess
import sys

import optuna
import pytest

from tuner.runtime.ownership import tagged_groups
from tuner.study.storage import open_storage

FAST = ["load.qps=20", "load.duration=0.5", "sampler=random", "params.pa_config.num_blocks.low=256",
        "params.model_config.decode_batch_size.choices=[8,16]"]


@pytest.mark.parametrize("display", ["plain", "bars"])
def test_a_closed_stdout_loses_no_trial(project_root, display):
    """plain: --no-progress lines on stdout, closed after the first (``| head -1``); bars: the rich
    display on stderr, sent into the same pipe (``2>&1 | head -1``)."""
    study = f"pipe_{display}"
    storage = f"sqlite:///{project_root / 'trials' / 'pipe.db'}"
    args = [sys.executable, "-m", "tuner.cli", "run", "--root", str(project_root), "--storage", storage,
            "--n-trials", "2", *FAST, f"study={study}"] + (["--no-progress"] if display == "plain" else [])
    errors = subprocess.PIPE if display == "plain" else subprocess.STDOUT
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
    first = proc.stdout.readline()
    proc.stdout.close()                       # the reader goes away, the study is still running
    err = proc.stderr.read().decode() if proc.stderr else ""
    rc = proc.wait(timeout=300)
    assert first
    assert rc in (0, 141) and "Traceback" not in err, err
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2, \
        [(t.number, t.state.name, t.user_attrs.get("fail_class"), t.user_attrs.get("fail_detail")) for t in trials]
    assert tagged_groups(study) == {}
