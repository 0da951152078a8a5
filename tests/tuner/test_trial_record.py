"""tuner/trial_record.py: the one place that knows a trial's user-attr keys, typed."""
import math

import optuna
import pytest

from tuner import trial_record as tr


@pytest.fixture
def trial():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study().ask()


def test_written_fields_and_metrics_read_back_typed(trial):
    tr.write(trial, config={"a": 1}, run_dir="trials/x/0", device=None, fail_class="oom")
    tr.write_metrics(trial, {"total_time": 3.5, "ttft_p99": math.nan})
    rec = tr.record(trial)
    assert (rec.config, rec.run_dir, rec.fail_class, rec.feasible) == ({"a": 1}, "trials/x/0", "oom", None)
    assert rec.metrics == {"total_time": 3.5, "ttft_p99": None}   # NaN stored as None (JSON has no NaN)
    assert tr.metric(trial, "total_time") == 3.5 and tr.metric(trial, "nothing") is None


def test_a_renamed_key_or_a_wrong_type_fails_where_it_is_written(trial):
    with pytest.raises(KeyError, match="fail_klass"):
        tr.write(trial, fail_klass="oom")
    with pytest.raises(TypeError, match="wrong type"):
        tr.write(trial, feasible="maybe")
    with pytest.raises(KeyError, match="record field"):
        tr.write_metrics(trial, {"config": 1.0})
    with pytest.raises(KeyError):
        tr.enqueued_attrs(retry=3)
    assert trial.user_attrs == {}                                  # nothing half-written


def test_a_study_written_before_a_field_existed_still_reads(trial):
    trial.set_user_attr("feasible", "odd")                          # not validated on reading
    trial.set_user_attr("an_old_metric", 1.0)
    rec = tr.record(trial)
    assert rec.feasible == "odd" and rec.metrics == {"an_old_metric": 1.0}


def test_study_attrs_by_key(trial):
    study = trial.study
    assert not tr.has_study_attr(study, tr.StudyKey.UID) and tr.study_attr(study, tr.StudyKey.UID, "none") == "none"
    tr.set_study_attr(study, tr.StudyKey.UID, "abc")
    assert tr.study_attr(study, tr.StudyKey.UID) == "abc" and tr.has_study_attr(study, tr.StudyKey.UID)
