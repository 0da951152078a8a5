"""A trial whose replay client fell behind is measured again once, then FAILs as client_overloaded:
never best, never exported (the stack is a stand-in here: the judgement itself is tested on the
embedded stack in test_trial.py)."""
import optuna
import yaml

from tuner.results.export import export_best
from tuner.runtime.trial import TrialOutcome
from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial

DBS = "model_config.decode_batch_size"
LATE = "the replay client fell behind: read lag p99 80.0 ms over 25 ms (capacity.max_read_lag)"


def test_a_lagging_client_is_measured_again_once_then_the_trial_fails(project_root, monkeypatch):
    calls = {}

    def run_trial(ctx, params, stop=None, replays=1):
        """dbs 32: fastest, its client always late; dbs 16: late once, then fine; dbs 8: fine."""
        dbs = params[DBS]
        calls[dbs] = calls.get(dbs, 0) + 1
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        (ctx.run_dir / "requests.csv").write_text(f"attempt {calls[dbs]}\n")
        metrics = {"total_time": {32: 1.0, 16: 2.0, 8: 3.0}[dbs], "utilisation": 50.0, "requests": 20.0,
                   "startup_s": 1.5, "replay_s": 1.0, "stop_s": 0.1}
        if dbs == 32 or (dbs == 16 and calls[dbs] == 1):
            return TrialOutcome(metrics=metrics, fail_class="client_overloaded", fail_detail=LATE)
        return TrialOutcome(metrics=metrics)

    monkeypatch.setattr("tuner.runtime.measure.run_trial", run_trial)
    space = load_space("pa_batching", project_root, ["sampler=random", "load.duration=0.5",
                                                     "objectives=[{name: total_time, direction: minimize}]"])
    run = StudyRun(space, project_root, f"sqlite:///{project_root / 'trials' / 'c.db'}")
    study = run.open_study()
    for dbs in (32, 16, 8):
        study.enqueue_trial(space.stored_params({DBS: dbs, "pa_config.num_blocks": 512, "pa_config.block_size": 16,
                                                 "model_config.prefill_batch_size": 2}))
    study = run.run(3)
    t = {t.user_attrs["config"][DBS]: t for t in study.trials}
    assert calls == {32: 2, 16: 2, 8: 1}
    late, once = t[32], t[16]
    assert late.state == optuna.trial.TrialState.FAIL and late.user_attrs["fail_class"] == "client_overloaded"
    assert "measured again" in late.user_attrs["fail_detail"]
    assert once.state == optuna.trial.TrialState.COMPLETE and once.user_attrs["client_remeasured"] == 1.0
    run_dir = project_root / once.user_attrs["run_dir"]
    assert (run_dir / "requests.csv").read_text() == "attempt 2\n"
    assert (run_dir / "client_overloaded" / "requests.csv").read_text() == "attempt 1\n"   # kept, aside
    assert best_trial(study).number == once.number           # the faster late one never wins
    out = export_best(study, space, project_root, project_root / "configs/llama/best.yaml")
    assert yaml.safe_load(out.read_text())["model_config"]["decode_batch_size"] == [16]
