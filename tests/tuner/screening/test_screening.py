"""Pre-screen wired into the study: simulate first, prune the unpromising, probe then promote."""
from pathlib import Path

import optuna
import pytest

from serving.config.errors import ConfigError
from tuner.screening import prescreen
from tuner.space.compose import load_space
from tuner.study.progress import PlainProgress
from tuner.study.run import StudyRun

SMALL = ["load.qps=20", "load.duration=1", "seed=3"]


def test_sim_gate_prunes_without_launching(project_root, capsys):
    space = load_space("pa_batching", project_root, SMALL + ["backend=sim", "+prescreen={top_fraction: 0.2, warmup: 2, warm_start: 0}"])
    progress = PlainProgress(["total_time", "utilisation"])
    study = StudyRun(space, project_root, "sqlite:///" + str(project_root / "trials/ps.db"), progress=progress).run(10)
    states = [t.state for t in study.trials]
    assert all("prescreen_value" in t.user_attrs for t in study.trials)
    assert optuna.trial.TrialState.PRUNED in states
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(not t.user_attrs["prescreen_promising"] for t in pruned)
    assert not any(Path(t.user_attrs["run_dir"]).exists() for t in pruned)
    lines = capsys.readouterr().out.splitlines()   # every trial ends with a line, pruned ones too
    assert sorted(int(x.split()[1].rstrip(":")) for x in lines) == [t.number for t in study.trials]
    assert sum("pruned: pre-screen" in x for x in lines) == len(pruned)


def test_real_probe_then_full_run(project_root, monkeypatch):
    space = load_space("pa_batching", project_root, SMALL + [
        "+prescreen={top_fraction: 1.0, warmup: 5, probe_fraction: 0.5, promote_within: 10.0, warm_start: 0}"])
    simulated = []   # plan lengths: the gate's full-plan simulation is reused by the probe, not redone
    real_simulate = prescreen.simulate_params
    monkeypatch.setattr(prescreen, "simulate_params",
                        lambda space, root, params, plan, run_dir=None: simulated.append(len(plan))
                        or real_simulate(space, root, params, plan, run_dir))
    study = StudyRun(space, project_root, "sqlite:///" + str(project_root / "trials/pp.db")).run(2)
    # the first trial has no best to be compared with, so no probe: its full plan runs at once;
    # the second: the full plan at the gate, then the probe's half
    assert simulated == [20, 20, 10]
    first, second = sorted(study.trials, key=lambda t: t.number)
    assert first.state == second.state == optuna.trial.TrialState.COMPLETE
    assert "probe_promoted" not in first.user_attrs and not (Path(first.user_attrs["run_dir"]) / "probe").exists()
    done = [second]
    assert second.user_attrs["probe_promoted"]
    run_dir = Path(done[0].user_attrs["run_dir"])
    assert (run_dir / "probe/requests.csv").exists()
    assert (run_dir / "requests.csv").exists()
    # both stacks were tagged for resume and their process groups noted, as measure() does
    for d in (run_dir / "probe", run_dir):
        assert int((d / "stack.pgid").read_text().split()[0]) > 1
    assert done[0].user_attrs["requests"] == 20


def test_probe_and_repeats_do_not_mix(project_root):
    with pytest.raises(ConfigError, match="repeats"):   # at load, before any study or trial exists
        load_space("pa_batching", project_root, SMALL + ["repeats=2", "+prescreen={probe_fraction: 0.5}"])


def test_probe_is_gated_on_the_best_so_far_without_early_stop(project_root):
    """The shipped space leaves early_stop.margin null: the probe must still compare its prediction
    with the best feasible first objective of the study (issue 12: every probe was promoted)."""
    space = load_space("pa_batching", project_root, SMALL + [
        "backend=sim", "sampler=random", "+prescreen={top_fraction: 1.0, warmup: 0, probe_fraction: 0.5, "
        "promote_within: 0.0, warm_start: 0}"])
    assert space.early_stop.margin is None
    study = StudyRun(space, project_root, "sqlite:///" + str(project_root / "trials/pg.db")).run(8)
    best = None
    promoted = []
    for t in sorted(study.trials, key=lambda t: t.number):
        if best is None:   # nothing to compare a probe with: no probe, the full plan runs at once
            assert "probe_promoted" not in t.user_attrs
            if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("feasible"):
                best = t.values[0]
            continue
        predicted = t.user_attrs["predicted_total_time"]
        assert t.user_attrs["probe_promoted"] == (best is None or predicted <= best)
        promoted.append(t.user_attrs["probe_promoted"])
        if t.state == optuna.trial.TrialState.COMPLETE:
            best = t.values[0] if best is None else min(best, t.values[0])
    assert promoted and not all(promoted)
