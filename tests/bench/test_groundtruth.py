"""bench/groundtruth.py: tables resume, extend and refuse a mismatch (measured on the simulator backend,
the same run_trial path as a real stack's, seconds instead of minutes)."""
import csv
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import groundtruth  # noqa: E402
import tabular  # noqa: E402

GRID = {"model_config.decode_batch_size": [4, 16], "pa_config.num_blocks": [16, 1024]}   # 16 blocks: rejected


def sim_table(overrides=()):
    return groundtruth.Table("t", "pa_batching", ["backend=sim", "load.qps=20", "load.duration=1", *overrides],
                             dict(GRID))


def rows(out):
    with (out / "t.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_table_resumes_extends_and_keeps_its_provenance(tmp_path):
    assert groundtruth.build(sim_table(), 2, None, 3, tmp_path, seed=0) == 0
    first = rows(tmp_path)
    assert len(first) == 3                                    # stopped at the limit
    assert len({r["config"] for r in first}) == 3             # one pass: each configuration once before any twice
    groundtruth.build(sim_table(), 2, None, None, tmp_path, seed=0)
    second = rows(tmp_path)
    assert second[:3] == first and len(second) == 8           # resumed: appended, nothing measured twice over
    groundtruth.build(sim_table(), 2, None, None, tmp_path, seed=0)
    assert len(rows(tmp_path)) == 8                           # already measured enough
    groundtruth.build(sim_table(), 3, None, None, tmp_path, seed=0)
    third = rows(tmp_path)
    assert len(third) == 12 and {r["launch"] for r in third} == {"0", "1", "2"}
    for r in third:
        assert float(r["loadavg1"]) >= 0 and r["date"].endswith("Z") and r["commit"]
        assert float(r["launch_s"]) >= 0 and float(r["replay_s"]) >= 0
    rejected = [r for r in third if json.loads(r["pa_config.num_blocks"]) == 16]
    assert rejected and all(r["ok"] == "0" and r["fail_class"] == "config_rejected" for r in rejected)
    meta = json.loads((tmp_path / "t.json").read_text())
    assert meta["study"] == "pa_batching" and meta["load"]["qps"] == 20 and meta["stack_version"]
    gt = tabular.load_table(tmp_path / "t.csv")
    assert [len(r) for r in gt.runs] == [3, 3, 3, 3]
    assert gt.optimum[1] < float("inf")


def test_a_table_begun_before_the_ttft_column_keeps_its_header_and_its_rows_aligned(tmp_path):
    groundtruth.build(sim_table(), 1, None, None, tmp_path, seed=0)
    old = rows(tmp_path)
    assert all(float(r["ttft_p99"]) > 0 for r in old if r["ok"] == "1")   # a new table keeps each replay's p99 TTFT
    with (tmp_path / "t.csv").open("w", newline="") as fh:    # as a table written before the column was
        cols = [c for c in old[0] if c != "ttft_p99"]
        writer = csv.DictWriter(fh, cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(old)
    groundtruth.build(sim_table(), 2, None, 2, tmp_path, seed=0)
    both = rows(tmp_path)
    assert len(both) == 6 and all("ttft_p99" not in r for r in both)
    assert all(json.loads(r["config"])["pa_config.num_blocks"] == json.loads(r["pa_config.num_blocks"]) for r in both)


def test_a_table_measured_under_other_conditions_is_refused(tmp_path):
    groundtruth.build(sim_table(), 1, None, 1, tmp_path, seed=0)
    with pytest.raises(SystemExit, match="other conditions"):
        groundtruth.build(sim_table(["load.seed=3"]), 1, None, None, tmp_path, seed=0)
    assert len(rows(tmp_path)) == 1


def test_extending_the_grid_keeps_the_rows_and_measures_the_new_levels(tmp_path):
    groundtruth.build(sim_table(), 1, None, None, tmp_path, seed=0)
    wider = sim_table()
    wider.grid["model_config.decode_batch_size"] = [4, 64]
    groundtruth.build(wider, 1, None, None, tmp_path, seed=0)
    meta = json.loads((tmp_path / "t.json").read_text())
    assert meta["grid"]["model_config.decode_batch_size"] == [4, 16, 64]
    assert len(rows(tmp_path)) == 6


def test_replays_per_launch_give_a_row_each_with_its_own_replay_seconds(tmp_path):
    t = sim_table()
    t.grid = {"model_config.decode_batch_size": [16], "pa_config.num_blocks": [1024]}
    t.replays = 2
    groundtruth.build(t, 1, None, None, tmp_path, seed=0)
    got = rows(tmp_path)
    assert [(r["launch"], r["replay"], r["ok"]) for r in got] == [("0", "0", "1"), ("0", "1", "1")]
    assert got[0]["launch_s"] == got[1]["launch_s"] and float(got[1]["replay_s"]) > 0
    assert float(got[1]["total_time"]) > 0


def test_a_launch_the_host_failed_is_kept_measured_again_and_left_out_of_the_replay(tmp_path, monkeypatch):
    """A replay whose client fell behind (client_overloaded) says nothing about the configuration."""
    t = sim_table()
    t.grid = {"model_config.decode_batch_size": [16], "pa_config.num_blocks": [1024]}
    real = groundtruth.measure_launch
    outcomes = iter(["client_overloaded", ""])

    def flaky(*a, **kw):
        got = real(*a, **kw)
        fail = next(outcomes)
        return [r | {"ok": int(not fail), "fail_class": fail} for r in got]

    monkeypatch.setattr(groundtruth, "measure_launch", flaky)
    groundtruth.build(t, 1, None, None, tmp_path, seed=0)
    got = rows(tmp_path)
    assert [(r["launch"], r["fail_class"]) for r in got] == [("0", "client_overloaded"), ("1", "")]
    gt = tabular.load_table(tmp_path / "t.csv")
    assert len(gt.runs[0]) == 1 and gt.runs[0][0][0] < float("inf")


def test_a_configuration_the_host_always_fails_is_given_up_after_host_tries_even_one_launch_a_run(
        tmp_path, monkeypatch):
    """The tries are counted from the table's rows: a bench resumed after every launch (--limit 1)
    does not relaunch a configuration the host fails for ever."""
    t = sim_table()
    t.grid = {"model_config.decode_batch_size": [4, 16], "pa_config.num_blocks": [1024]}
    real = groundtruth.measure_launch

    def host_fails_batch_4(space, params, *a, **kw):
        got = real(space, params, *a, **kw)
        fail = "client_overloaded" if params["model_config.decode_batch_size"] == 4 else ""
        return [r | {"ok": int(not fail), "fail_class": fail} for r in got]

    monkeypatch.setattr(groundtruth, "measure_launch", host_fails_batch_4)
    for _ in range(groundtruth.HOST_TRIES + 3):
        groundtruth.build(t, 1, None, 1, tmp_path, seed=0)
    got = [(r["model_config.decode_batch_size"], r["fail_class"]) for r in rows(tmp_path)]
    assert sorted(got) == sorted([("4", "client_overloaded")] * groundtruth.HOST_TRIES + [("16", "")])


def test_the_tables_simulator_is_the_calibrated_profile_beside_it_and_its_cache_follows_it(tmp_path):
    import shutil
    import tabular_fidelity
    from serving.sim.profile_io import PROFILES
    assert groundtruth.build(sim_table(), 1, None, None, tmp_path, seed=0) == 0
    gt = tabular.load_table(tmp_path / "t.csv")
    gt.meta["backend"] = "embedded"        # as a table measured on the embedded engine names it
    assert tabular_fidelity.sim_overrides("vllm", "t", tmp_path) is None     # no calibrated surrogate: none
    shipped = tabular_fidelity.sim_values(gt, groundtruth.ROOT, tmp_path)
    cache = json.loads((tmp_path / "t.sim.json").read_text())
    assert cache["overrides"] == ["backend=sim"] and len(cache["values"]) == len(gt.configs)
    shutil.copy(PROFILES / "embedded.yaml", tmp_path / "t.profile.yaml")   # `tune calibrate --out` on this host
    again = tabular_fidelity.sim_values(gt, groundtruth.ROOT, tmp_path)
    cache = json.loads((tmp_path / "t.sim.json").read_text())
    # the profile named by its file name (the same table read from another folder is the same simulator)
    assert cache["overrides"] == ["backend=sim", "++sim.profile=t.profile.yaml"] and cache["profile"]
    assert again == shipped                # the same profile under another name simulates the same
    # refitted in place (tune calibrate --out again): the cache starts afresh, and follows the new profile
    from serving.sim.profile_io import load_profile, write_profile
    faster = load_profile(tmp_path / "t.profile.yaml")
    faster.decode_host["base"] += 0.01
    write_profile(faster, tmp_path / "t.profile.yaml", "refitted")
    slower = tabular_fidelity.sim_values(gt, groundtruth.ROOT, tmp_path)
    assert json.loads((tmp_path / "t.sim.json").read_text())["profile"] != cache["profile"]
    assert all(b > a for a, b in zip(shipped, slower) if not math.isnan(a))


def test_the_simulators_p99_ttft_is_held_against_the_tables(tmp_path):
    import tabular_fidelity
    assert groundtruth.build(sim_table(), 2, None, None, tmp_path, seed=0) == 0
    gt = tabular.load_table(tmp_path / "t.csv")
    gt.meta["backend"] = "embedded"
    real = tabular_fidelity.real_ttft(tmp_path / "t.csv", gt)
    ok = [i for i, c in enumerate(gt.configs) if c["pa_config.num_blocks"] == 1024]
    assert all(real[i] > 0 for i in ok) and all(math.isnan(r) for i, r in enumerate(real) if i not in ok)
    sims = tabular_fidelity.sim_values(gt, groundtruth.ROOT, tmp_path, metric="ttft_p99")
    # the same simulator on the same plan measured the table (backend=sim): its TTFT is the table's
    assert all(math.isclose(sims[i], real[i], rel_tol=1e-6) for i in ok)
    f = tabular_fidelity.ttft_fidelity(real, sims)
    assert f["n"] == len(ok) and f["mean_err"] < 1e-6 and math.isclose(f["bias"], 1.0)
    cached = json.loads((tmp_path / "t.sim.json").read_text())
    assert set(cached["values"]) == set(cached["ttft_p99"])          # both kept from one simulation
    assert tabular_fidelity.sim_values(gt, groundtruth.ROOT, tmp_path, compute=False, metric="ttft_p99") == sims
    old = tmp_path / "old.csv"                                        # a table written before the column
    old.write_text("config,ok,fail_class,total_time\n")
    assert tabular_fidelity.real_ttft(old, gt) is None


def test_each_replay_of_a_launch_is_judged_for_its_client_and_one_that_kept_up_counts(tmp_path, monkeypatch):
    """vLLM's launch is the slow part: a launch whose first replay's client fell behind still measures
    the configuration when its second kept up; a second replay whose client fell behind is a host row."""
    import tuner.runtime.trial as trial
    from tuner.space.compose import load_space
    t = sim_table()
    space = load_space(t.study, groundtruth.ROOT, t.overrides)
    from tuner.study.run import StudyRun
    plan = StudyRun(space, groundtruth.ROOT, "").plan()
    params = {"model_config.decode_batch_size": 16, "pa_config.num_blocks": 1024}
    real = trial.run_trial(trial.TrialContext(space, groundtruth.ROOT, tmp_path / "r", plan), params, replays=2)
    assert real.ok and real.more_replays[0]["client_behind"] == ""     # judged, and it kept up
    assert real.more_replays[0]["fail_detail"] == ""
    kept = pd.read_csv(tmp_path / "r" / "requests.1.csv")            # the second replay's records are kept too
    assert len(kept) == len(plan) and kept["done"].notna().all()
    second = {"requests": 10, "requests_failed": 0, "alive": 1.0, "total_time": 1.0, "replay_s": 1.0,
              "fail_detail": "HTTP 503: overloaded"}
    lag = "send lag p99 90 ms"
    for behind, failed, alive, want, why in (
            ("", 0, 1.0, ["client_overloaded", ""], ""),
            ("", 10, 1.0, ["client_overloaded", "replay_failed"], "HTTP 503: overloaded"),
            (lag, 0, 1.0, ["client_overloaded"] * 2, lag),
            (lag, 10, 1.0, ["client_overloaded"] * 2, lag),                           # the client's, first
            (lag, 10, 0.0, ["client_overloaded", "replay_failed"], "HTTP 503: overloaded")):   # the stack died
        out = trial.TrialOutcome(fail_class="client_overloaded", metrics={"total_time": 1.2},
                                 more_replays=[second | {"client_behind": behind, "requests_failed": failed,
                                                         "alive": alive}])
        monkeypatch.setattr(trial, "run_trial", lambda *a, _o=out, **kw: _o)
        rows = groundtruth.measure_launch(space, params, plan, tmp_path / "x", replays=2)
        assert [r["fail_class"] for r in rows] == want
        assert rows[1]["detail"] == why and rows[0]["detail"] == ""      # why the second replay failed, in its row


def test_fidelity_only_reads_a_table_still_being_built_with_the_profile_beside_it(tmp_path):
    import os
    import subprocess
    assert groundtruth.build(sim_table(), 1, None, 2, tmp_path, seed=0) == 0      # 2 of 4 configurations
    run = lambda: subprocess.run([sys.executable, str(BENCH / "tabular.py"), str(tmp_path / "t.csv"),  # noqa: E731
                                  "--fidelity-only"], capture_output=True, text=True, timeout=120,
                                 env={**os.environ, "TUNER_BENCH_RESULTS": "-"})
    out = run()
    assert out.returncode == 2 and "no simulator for this table's stack" in out.stderr    # a sim table has none
    meta = json.loads((tmp_path / "t.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps(meta | {"backend": "embedded"}))
    out = run()
    assert out.returncode == 0, out.stderr
    assert "configurations measured so far" in out.stdout and "simulator vs t:" in out.stdout
    assert (tmp_path / "t.sim.json").exists()           # the cache beside the table, not under bench/data
