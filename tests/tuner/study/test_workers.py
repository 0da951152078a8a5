"""Many workers on one study: `tune --devices 0,1` on a journal file and on PostgreSQL
(skipped unless TUNER_TEST_PG_URL names a reachable server; .ci/run starts one)."""
import os
import uuid

import optuna
import pytest

from tuner.cli import main
from tuner.study.storage import open_storage
from tuner.study.workers import parse_devices, split

FAST = ["--no-progress", "load.qps=20", "load.duration=0.5", "sampler=random",
        "params.pa_config.num_blocks.low=256", "params.model_config.decode_batch_size.choices=[8,16]"]


def test_split_and_devices():
    assert split(5, 2) == [3, 2] and split(1, 3) == [1, 0, 0]
    assert parse_devices("0,1") == [0, 1]
    for bad in ("0,0", "", "a,b"):
        with pytest.raises(ValueError):
            parse_devices(bad)


def run_two_workers(project_root, storage: str, study: str) -> optuna.Study:
    rc = main(["run", "--root", str(project_root), "--storage", storage, "--devices", "0,1", "--n-trials", "4",
               *FAST, f"study={study}"])
    assert rc == 0
    return optuna.load_study(study_name=study, storage=open_storage(storage))


def check(study: optuna.Study) -> None:
    trials = study.trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), \
        [(t.number, t.state, t.user_attrs.get("fail_detail")) for t in trials]
    assert {t.user_attrs["device"] for t in trials} == {0, 1}
    assert len({t.user_attrs["owner"] for t in trials}) == 2          # two worker processes
    assert len({t.user_attrs["run_dir"] for t in trials}) == 4        # never the same run directory


def test_two_workers_share_a_journal_file(project_root):
    storage = f"journal:{project_root / 'trials' / 'journal.log'}"
    check(run_two_workers(project_root, storage, "pa_journal"))


def _pg_url() -> str | None:
    url = os.environ.get("TUNER_TEST_PG_URL")
    if not url:
        return None
    try:
        import sqlalchemy
        with sqlalchemy.create_engine(url).connect():
            return url
    except Exception:  # driver missing or server down: the test is skipped, not failed
        return None


@pytest.mark.skipif(_pg_url() is None, reason="no PostgreSQL server (set TUNER_TEST_PG_URL; .ci/run starts one)")
def test_two_workers_share_a_postgresql_study(project_root):
    study = f"pa_pg_{uuid.uuid4().hex[:8]}"  # the database outlives the test: a fresh study each run
    storage = _pg_url()
    try:
        check(run_two_workers(project_root, storage, study))
    finally:
        optuna.delete_study(study_name=study, storage=storage)
