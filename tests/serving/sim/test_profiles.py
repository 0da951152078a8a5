"""The bundled profiles: loading, the table arithmetic, and the 910B reproduction goals."""
from dataclasses import replace

import pytest

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.sim.latency import LatencyModel, interp, load_profile
from serving.sim.simulator import SimSettings, simulate
from tests.conftest import ROOT
from tuner.runtime.metrics import score
from tuner.workload.trace import load_trace, schedule


def test_bundled_profiles_load_and_round_trip():
    for name in ("embedded", "ascend910b_llama2_7b"):
        m = load_profile(name)
        assert LatencyModel.from_dict(m.to_dict()) == m
    assert load_profile("embedded").decode_by_bucket and load_profile("embedded").prefill_table


def test_interp_between_and_beyond_points():
    pts = {1: 1.0, 4: 4.0, 8: 6.0}
    assert interp(pts, 2) == pytest.approx(2.0) and interp(pts, 6) == pytest.approx(5.0)
    assert interp(pts, 16) == pytest.approx(10.0) and interp({4: 2.0}, 8) == pytest.approx(4.0)


def test_profile_errors_name_the_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("decode: {compute: {base: -1}}\n")
    with pytest.raises(ConfigError, match="decode.compute"):
        load_profile(bad)
    bad.write_text("decode: {compute: {bass: 1}}\n")
    with pytest.raises(ConfigError, match="bass"):
        load_profile(bad)


def _published_run(decode: int, qps: float, limit: int | None = None) -> float:
    base = SimSettings.from_config(load_serving_yaml(ROOT / "configs/llama/llama_7b_kbk_pa_dyn.yaml"))
    s = replace(base, prefill_batch_size=(1,), decode_batch_size=(decode,))
    plan = schedule(load_trace(ROOT / "traces/alpaca_like_1500.jsonl"), qps, 1500 / qps, limit=limit)
    return score(simulate(s, load_profile("ascend910b_llama2_7b"), plan).records)["total_time"]


def test_910b_baseline_within_10_percent_of_3552_s():
    assert _published_run(1, 0.5) == pytest.approx(3551.93, rel=0.10)     # full 1,500 requests, < 1 s


def test_910b_decode_128_within_10_percent_of_670_s():
    assert _published_run(128, 10) == pytest.approx(669.87, rel=0.10)
    assert _published_run(128, 5) == pytest.approx(679.96, rel=0.10)
