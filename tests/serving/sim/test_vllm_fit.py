"""The vLLM surrogate's step-time fit and its profile file, without vLLM."""
import numpy as np
import pytest

from serving.config.errors import ConfigError
from serving.sim.vllm_fit import Observation, fit_steptime, observations
from serving.sim.vllm_profile import VllmProfile, load_vllm_profile, write_vllm_profile
from serving.sim.vllm_steptime import StepTime
from serving.workload import RequestRecord

TRUE = StepTime(base=0.02, per_prefill_token=2e-5, per_decode_seq=8e-4, per_context_token=3e-7,
                arrival_delay=0.004, delivery_delay=0.004)


def makespan(n, plen, olen, budget):
    """Step by step, as the surrogate would charge it: prefill chunks of ``budget``, then decodes."""
    t, left = TRUE.arrival_delay + TRUE.delivery_delay, n * plen
    while left > 0:
        chunk = min(left, budget)
        left -= chunk
        t += TRUE.step(chunk, 0, n * plen - left)
    for j in range(1, olen):
        t += TRUE.step(0, n, n * (plen + j))
    return t


def synthetic(noise=0.0, seed=0):
    """What a calibration would see if vLLM's steps cost exactly TRUE (plus noise)."""
    rng = np.random.default_rng(seed)
    obs = []
    for plen in (8, 64, 256, 512):
        for _ in range(2):
            y = TRUE.arrival_delay + TRUE.step(plen, 0, plen) + TRUE.delivery_delay
            obs.append(Observation("ttft", 1, plen, 16, y * (1 + noise * rng.standard_normal()), 4096))
    for n, plen in ((1, 8), (4, 16), (4, 128), (16, 128), (48, 16), (48, 128), (64, 32)):
        for olen in (16, 64):
            y = makespan(n, plen, olen, 4096)
            obs.append(Observation("makespan", n, plen, olen, y * (1 + noise * rng.standard_normal()), 4096))
    return obs


def test_fit_recovers_the_step_time_it_was_made_from():
    st, stats = fit_steptime(synthetic())
    for k in ("base", "per_prefill_token", "per_decode_seq", "per_context_token"):
        assert getattr(st, k) == pytest.approx(getattr(TRUE, k), rel=1e-3, abs=1e-9), k
    assert st.arrival_delay + st.delivery_delay == pytest.approx(0.008, rel=1e-3)
    assert stats["r2"] > 0.999 and stats["n"] >= 0.9 * len(synthetic())   # exact data: the 6-MAD trim may drop a rounding


def test_fit_under_noise_stays_close_and_never_negative():
    st, stats = fit_steptime(synthetic(noise=0.05, seed=3))
    assert min(st.as_dict().values()) >= 0
    assert st.per_decode_seq == pytest.approx(TRUE.per_decode_seq, rel=0.25)
    assert st.base == pytest.approx(TRUE.base, rel=0.25)


def test_too_few_observations_are_refused():
    with pytest.raises(ValueError, match="at least 5 observations"):
        fit_steptime(synthetic()[:3])


def test_observations_from_records():
    def rec(i, sent, first, done, error=None):
        return RequestRecord(i, 100, 5, 0.0, sent=sent, first_token=first, done=done, n_tokens=5, error=error)
    [span] = observations([rec(0, 0.0, 0.3, 0.7), rec(1, 0.01, 0.3, 0.9)], 4096)
    assert (span.kind, span.seqs, span.prompt, span.output, span.budget) == ("makespan", 2, 100, 5, 4096)
    assert span.seconds == pytest.approx(0.9)            # first send to last completion
    lone = observations([rec(0, 0.0, 0.3, 0.7)])
    assert [(o.kind, o.seconds) for o in lone] == [("makespan", pytest.approx(0.7)), ("ttft", pytest.approx(0.3))]
    assert observations([rec(0, 0.0, 0.3, 0.7), rec(1, 0.0, None, None, "boom")]) == []   # a failed burst says nothing


def test_profile_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "p.yaml"
    write_vllm_profile(VllmProfile(TRUE, {"n": 30.0, "r2": 0.9}, 524288), path, "measured here\nline two")
    back = load_vllm_profile(path)
    assert back.steptime == TRUE and back.kv_tokens == 524288 and back.fit["r2"] == 0.9
    assert path.read_text().startswith("# measured here\n# line two\n")
    with pytest.raises(ConfigError, match="tune calibrate"):
        load_vllm_profile(tmp_path / "missing.yaml")
    path.write_text("steptime: {base: -1}\n")
    with pytest.raises(ConfigError, match=">= 0"):
        load_vllm_profile(path)
