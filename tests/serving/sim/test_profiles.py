"""The bundled profiles: loading, the table arithmetic, and the 910B reproduction goals."""
from dataclasses import replace

import pytest

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.sim.latency import LatencyModel, interp
from serving.sim.profile_io import load_profile
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


@pytest.mark.parametrize("text,key,found", [
    ("decode: {compute: {base: -1}}\n", "decode.compute.base", "greater than or equal to 0"),
    ("decode: {compute: {bass: 1}}\n", "decode.compute.bass", "Extra inputs"),
    ("prefill: {table: {4: {17: fast}}}\n", "prefill.table.4.17", "valid number"),
    ("prefill: {table: {0: {17: 0.1}}}\n", "prefill.table.0.[key]", "greater than or equal to 1"),
    ("request: {arrival_delay: 0.1, queue_cost: 0.2}\n", "request.queue_cost", "Extra inputs"),
    ("decode: [1, 2]\n", "decode", "valid dictionary"),
    ("single_prefil: true\n", "single_prefil", "Extra inputs"),
])
def test_profile_errors_name_the_file_and_key(tmp_path, text, key, found):
    bad = tmp_path / "p.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_profile(bad)
    assert err.value.path == bad and str(err.value).startswith(f"{bad}: {key}: ") and found in str(err.value)


def test_a_profile_must_be_a_mapping(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping of sections, found list"):
        load_profile(bad)


def test_empty_sections_and_terms_cost_nothing(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("prefill:\n  host:\ndecode: {compute: {base: 0.01}}\n")
    m = load_profile(p)
    assert m.name == "p" and m.prefill(1, 1, 8) == (0.0, 0.0) and m.decode(1, 1, 8) == (0.01, 0.0)


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
