"""Early stop: a replay already slower than the best known trial (plus margin) is aborted
through Replayer.abort and stored PRUNED with its partial figures; it is never best."""
from pathlib import Path

import optuna
import pandas as pd

from tuner.space.compose import load_space
from tuner.runtime.early_stop import EarlyStop, best_known
from tuner.runtime.ownership import tagged_groups
from tuner.space.rigour import EarlyStopSpec
from tuner.study.storage import open_storage
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial

STUDY = "pa_early"


def space(root, margin=0.5):
    s = load_space("pa_batching", root, ["load.qps=20", "load.duration=3", "sampler=random", f"study={STUDY}",
                                         "params.pa_config.num_blocks.low=256"])
    return s.model_copy(update={"early_stop": EarlyStopSpec(margin=margin, grace=0.0)})


def fast_trial(study, total_time: float):
    """A finished feasible trial as good as ``total_time`` (what the study has seen so far)."""
    dist = {"model_config.prefill_batch_size": optuna.distributions.CategoricalDistribution([1, 2, 4, 8]),
            "model_config.decode_batch_size": optuna.distributions.CategoricalDistribution([1, 2, 4, 8, 16, 32, 64]),
            "pa_config.num_blocks": optuna.distributions.IntDistribution(256, 1024, log=True),
            "pa_config.block_size": optuna.distributions.CategoricalDistribution([8, 16, 32, 64])}
    study.add_trial(optuna.trial.create_trial(
        params={"model_config.prefill_batch_size": 2, "model_config.decode_batch_size": 8,
                "pa_config.num_blocks": 512, "pa_config.block_size": 16},
        distributions=dist, values=[total_time, 50.0], user_attrs={"total_time": total_time, "feasible": True},
        system_attrs={"constraints:failed": 0.0, "constraints": [0.0]}))


def test_best_known_reads_feasible_minimised_metric_only(project_root):
    s = space(project_root)
    study = optuna.create_study(directions=["minimize", "maximize"])
    assert best_known(study, s) is None
    fast_trial(study, 0.3)
    assert best_known(study, s) == 0.3
    assert EarlyStop.for_trial(study, s).limit == 0.3 * 1.5
    assert best_known(study, s.model_copy(update={"early_stop": EarlyStopSpec()})) is None   # margin unset: off


def test_slow_replay_is_pruned_with_partial_figures(project_root):
    s = space(project_root)
    run = StudyRun(s, project_root, f"sqlite:///{project_root / 'trials' / 'e.db'}")
    fast_trial(run.open_study(), 0.2)  # no 3-second replay can beat 0.2 s * 1.5
    study = run.run(1)
    t = study.trials[-1]
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_limit_s"] == 0.3 and 0.3 <= t.user_attrs["pruned_after_s"]
    assert t.user_attrs["requests"] == 60 and t.user_attrs["requests_failed"] > 0   # partial figures kept
    df = pd.read_csv(Path(t.user_attrs["run_dir"]) / "requests.csv")
    assert df["error"].fillna("").str.startswith("cancelled: replay stopped early").any()
    # the replay ended at the stop, not at the end of its schedule: requests planned after it never went out
    stop_at = df["sent"].min() + t.user_attrs["pruned_after_s"]
    assert df.loc[df["scheduled"] > stop_at + 0.5, "sent"].isna().all()
    assert (df["scheduled"] > stop_at + 0.5).any()
    assert best_trial(study).number == 0 and tagged_groups(STUDY) == {}
    assert optuna.load_study(study_name=STUDY, storage=open_storage(run.storage)).trials[-1].state.name == "PRUNED"
