"""Bench scripts' logic on synthetic inputs (the benches themselves print figures; nothing here is timed)."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import search  # noqa: E402

from tuner.space.compose import load_space  # noqa: E402


def toy(p):
    """Infeasible below a KV pool size; faster with bigger decode batches and pools."""
    kv = (p["pa_config.num_blocks"] - 1) * p["pa_config.block_size"]
    if kv < 600:
        return math.inf
    return 300 + 3000 / p["model_config.decode_batch_size"] + 20 * abs(math.log2(p["model_config.prefill_batch_size"]) - 1) \
        + 5e4 / kv


@pytest.fixture(scope="module")
def space():
    return load_space("pa_batching", BENCH.parent, [])


def test_coarse_grid_fits_the_budget_with_interior_values(space):
    grid = search.coarse_grid(space, 30)
    assert 1 < len(grid) <= 30 and len({tuple(sorted(p.items())) for p in grid}) == len(grid)
    decode = sorted({p["model_config.decode_batch_size"] for p in grid})
    assert 1 not in decode and 64 not in decode  # interior, as a person's list would be


def test_trials_to_counts_the_first_trial_within_target():
    assert search.trials_to([5, 3, 2.05, 1], 2.1) == 3
    assert math.isinf(search.trials_to([math.inf, 5], 2))


def test_compare_reports_every_method_against_the_grid_optimum(space, capsys):
    res = search.compare(space, toy, seeds=1, budget=6, horizon=6)
    grid_best = min(toy(dict(zip(space.param_specs(), v))) for v in __import__("itertools").product(
        *(s.grid() for s in space.param_specs().values())))
    assert res["optimum"] == grid_best and toy(res["best_params"]) == grid_best
    assert set(res["methods"]) == {search.OURS, search.TPE, "random", "coarse grid"}
    # the coarse grid is deterministic: its figures are computed here independently
    coarse = [toy(p) for p in search.coarse_grid(space, 6)]
    grid = res["methods"]["coarse grid"]
    assert grid["ratio"] == grid["ratio_max"] == min(coarse) / grid_best
    assert grid["within"] == float(min(coarse) <= grid_best * 1.02)
    assert grid["trials"] == search.trials_to(coarse, grid_best * 1.02)
    search.report(res, 1, 6, 6)
    out = capsys.readouterr().out
    assert f"total_time {grid_best:.2f} s" in out and "coarse grid" in out


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    """Benches run here keep their result files in the test's folder, never in bench/results."""
    monkeypatch.setenv("TUNER_BENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_replay_bench_quick_run_prints_every_client_and_the_goal(results_in_tmp):
    out = subprocess.run([sys.executable, str(BENCH / "replay.py"), "--quick"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    kept = list(results_in_tmp.glob("replay-*.txt"))        # the run's own record of what it printed
    assert len(kept) == 1 and "load average at start" in kept[0].read_text() and "GOAL >= 2000" in kept[0].read_text()
    assert "goal < 1 ms" in out.stdout and "started once in" in out.stdout
    assert "highest rate with p99 send lag < 5 ms" in out.stdout and "GOAL >= 2000 req/s" in out.stdout
    assert all(f" {client} " in out.stdout for client in ("replayer", "pool", "bare"))


def test_fidelity_spreads_calibration_passes_among_the_real_rounds():
    import sim_fidelity
    order = sim_fidelity.interleave(3, 5)
    assert order == [("pass", 0), ("round", 0), ("pass", 1), ("round", 1), ("round", 2), ("pass", 2),
                     ("round", 3), ("round", 4)]
    assert sim_fidelity.interleave(0, 2) == [("round", 0), ("round", 1)]
    assert [k for k, _ in sim_fidelity.interleave(2, 0)] == ["pass", "pass"]   # calibrate only: nothing lost


def test_workloads_bench_tunes_both_traces_and_swaps_their_optima():
    out = subprocess.run([sys.executable, str(BENCH / "workloads.py"), "--trials", "2", "--requests", "30"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "best on alpaca_like:" in out.stdout and "best on long_prompt:" in out.stdout
    assert "mooncake format, 30 records read" in out.stdout and "cost ratio" in out.stdout


def test_hours_to_tuned_charges_start_up_and_replay_per_launch(space):
    import search_hours as H
    # on the simulator, as bench/search.py runs it: the calibration it charges ours is simulated too
    space = load_space("pa_batching", BENCH.parent, ["backend=sim"])
    grid_best = min(toy(dict(zip(space.param_specs(), v))) for v in __import__("itertools").product(
        *(s.grid() for s in space.param_specs().values())))
    coarse = search.coarse_grid(space, 10)
    spec = H.DEFAULT_PRESCREEN.model_copy(update={"sim_trials": 4})
    res = H.hours_to_tuned(space, toy, grid_best, coarse, seeds=1, horizon=4, spec=spec)
    # the grid is deterministic: its cost is every feasible point's start-up and replay up to the one in reach
    spent, reached = 0.0, math.inf
    for p in coarse:
        v = toy(p)
        if not math.isinf(v):
            spent += H.STARTUP + v
            if v <= grid_best * 1.02 and math.isinf(reached):
                reached = spent
                break
    assert res["coarse grid (auto_tune style)"]["all_h"] == [reached / 3600]
    for name, m in res.items():
        assert len(m["all_h"]) == 1 and all(h >= 0 for h in m["all_h"]), name
        assert all(math.isinf(h) or h * 3600 >= H.STARTUP + grid_best for h in m["all_h"])   # one full trial at least
    H.report_hours(res, grid_best, 1, 4, "")


def test_hours_ours_runs_the_sims_best_first_and_charges_one_launch_for_it(space):
    """ours() goes through the product's warm start: its first real trial is the simulator study's best
    (under the pre-screen's erring simulator, not the truth); with no best yet it has no probe."""
    import search_hours as H
    from tuner.screening import warm_start
    seeded = space.model_copy(update={"seed": 1})
    spec = H.DEFAULT_PRESCREEN.model_copy(update={"sim_trials": 4})
    first = warm_start.sim_study(seeded, H.simulator(toy), 4, spec.warm_start).candidates[0][0]
    assert H.simulator(toy)(first) != toy(first)             # the simulator errs: it is not the truth
    led = H.ours(seeded, toy, 15, toy(first), spec)
    assert led.launches == 1 and led.reached == H.STARTUP + toy(first)


def test_capacity_bench_runs_both_searches_on_the_simulator():
    out = subprocess.run([sys.executable, str(BENCH / "capacity.py"), "--backend", "sim-tiny", "--configs", "1",
                          "--requests", "20"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "requests replayed ours" in out.stdout and "auto_tune" in out.stdout


def test_host_bench_counts_stalls_per_core_and_the_ones_both_cores_share():
    import host
    late = 'import json; print(json.dumps([[10.0, 0.3], [20.0, 0.2]]))'
    once = 'import json; print(json.dumps([[10.1, 0.25]]))'
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for code in (late, once)]
    name, core0, core1, longest, both, stalled, stolen, _load = host.summary("x", procs, host.steal())
    assert (name, core0, core1, longest, both) == ("x", 2, 1, "300 ms", 1)   # only the stall at 10 s is shared
    assert stalled == "0.8 s" and stolen.endswith(" s")                      # 0.3 + 0.2 + 0.25
    out = subprocess.run([sys.executable, str(BENCH / "host.py"), "--seconds", "0.3"], capture_output=True, text=True,
                         timeout=60, env={**__import__("os").environ, "TUNER_BENCH_RESULTS": "-"})
    assert out.returncode == 0 and "idle" in out.stdout and "2 CPU burners" in out.stdout, out.stderr


def test_a_refused_or_usage_run_keeps_no_result_file(results_in_tmp):
    """argparse's refusal (status 2) and --help measure nothing: no file is kept for them."""
    for argv, code in ((["--no-such-flag"], 2), (["--help"], 0)):
        out = subprocess.run([sys.executable, str(BENCH / "sim_vllm.py"), *argv], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == code, (argv, out.stderr[-500:])
        assert not list(results_in_tmp.glob("sim_vllm-*.txt")), argv


def test_a_benchs_exit_status_is_read_as_python_reads_it():
    from _common import _exit_code

    def leaving(code):
        def main():
            raise SystemExit(code)
        return main
    assert [_exit_code(leaving(c)) for c in (None, 0, 2, "a message")] == [0, 0, 2, 1]
    assert _exit_code(lambda: None) == 0 and _exit_code(lambda: 3) == 3
