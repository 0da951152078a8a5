import json

import numpy as np
import pytest

from serving.config.errors import ConfigError
from tests.conftest import ROOT
from tuner.workload.trace import arrival_offsets, load_trace, schedule, synthesize


def test_shipped_trace_matches_the_contest_lengths():
    trace = load_trace(ROOT / "traces/alpaca_like_1500.jsonl")
    out = np.array([r.output_len for r in trace])
    assert len(trace) == 1500 and out.max() <= 504 and 50 < out.mean() < 75


def test_n_is_x_times_t_and_gaps_have_mean_round_1_over_x():
    trace = load_trace(ROOT / "traces/alpaca_like_1500.jsonl")
    plan = schedule(trace, qps=0.5, duration=3000)
    assert len(plan) == 1500
    gaps = np.diff([off for off, _ in plan])
    assert plan[0][0] == 0.0 and abs(gaps.mean() - 2.0) < 0.15
    assert schedule(trace, 10, 150, seed=1) == schedule(trace, 10, 150, seed=1)


def test_x_above_200_sends_all_at_once_in_performance_serving_s_plan():
    assert arrival_offsets(5, 300, round_gaps=True).tolist() == [0.0] * 5
    assert [o for o, _ in schedule(load_trace(ROOT / "traces/alpaca_like_1500.jsonl"), 300, 1)] == [0.0] * 300


def test_alpaca_records_and_errors(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"instruction": "Say hi", "input": "to Bob", "output": "Hi Bob ."}) + "\n")
    (r,) = load_trace(p)
    assert r.prompt == "Say hi:to Bob" and r.output_len == 3
    p.write_text('{"prompt": "x", "output_len": 0}\n')
    with pytest.raises(ConfigError, match="line 1"):
        load_trace(p)
    with pytest.raises(ConfigError, match="not found"):
        load_trace(tmp_path / "missing.jsonl")


def test_synthesize_is_deterministic():
    assert synthesize(20, seed=3) == synthesize(20, seed=3)
