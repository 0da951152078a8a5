"""Bad flags, overrides, names and loads: one line and exit 2, checked before any trial starts."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import assert_rejected, seen
from tuner.runtime.metrics import is_known_metric
from tuner.space.spec import STUDY_NAME

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
not_int = st.one_of(st.integers(max_value=0).map(str), st.from_regex(r"[a-z]{1,5}|[0-9]\.[0-9]|-", fullmatch=True))


def run(sandbox, *argv: str):
    return sandbox.tune("run", "--root", str(sandbox.root), "--no-progress", *argv)


@FUZZ
@given(flag=st.sampled_from(["--n-trials", "--device"]), value=not_int)
def test_counts_must_be_counts(sandbox, flag, value):
    if flag == "--device" and value.lstrip("-").isdigit() and int(value) == 0:
        value = "-1"    # device 0 is a device
    seen("flag", (flag, value))
    assert_rejected(run(sandbox, flag, value, "--n-trials", "1") if flag == "--device"
                    else run(sandbox, flag, value), flag)


@FUZZ
@given(case=st.one_of(st.tuples(st.sampled_from(["--top-k", "--repeats"]), st.integers(max_value=1).map(str)),
                      st.tuples(st.just("--confidence"), st.sampled_from(["0.5", "1", "1.5", "nan", "x", "-2"]))))
def test_finalize_flags_are_checked_not_defaulted(sandbox, case):
    flag, value = case
    seen("flag", (flag, value))
    assert_rejected(sandbox.tune("finalize", "--root", str(sandbox.root), flag, value), flag)


@FUZZ
@given(devices=st.from_regex(r"[a-z,;]{1,6}|0,0|1,1,2|,", fullmatch=True))
def test_devices_are_distinct_ids(sandbox, devices):
    seen("flag", ("--devices", devices))
    assert_rejected(run(sandbox, "--devices", devices, "--n-trials", "2"), "--devices")


@FUZZ
@given(name=st.one_of(st.from_regex(r"\.[a-z]{0,5}|[a-z]{1,4}/[a-z]{1,4}|\.\./[a-z]{1,5}|-[a-z]{1,3}", fullmatch=True),
                      st.text(alphabet="ab/\\ *?\"'$", min_size=1, max_size=6)
                      .filter(lambda t: not STUDY_NAME.fullmatch(t.strip()))))   # hydra strips the blanks
def test_a_study_name_cannot_leave_its_folder(sandbox, name):
    seen("study name", name)
    r = run(sandbox, "--n-trials", "1", f"study={name}")
    assert_rejected(r)
    r = run(sandbox, "--study", name, "--n-trials", "1")   # the space file's name too
    assert_rejected(r)
    assert not list(sandbox.root.parent.glob("*.db"))


@FUZZ
@given(qps=st.floats(min_value=1e-6, max_value=1e12), duration=st.floats(min_value=1e-6, max_value=1e12))
def test_a_load_that_schedules_no_request_or_too_many_is_refused(sandbox, qps, duration):
    n = qps * duration
    if 1 <= n <= 1_000_000:
        return
    seen("load", (qps, duration))
    assert_rejected(run(sandbox, "--n-trials", "1", f"load.qps={qps!r}", f"load.duration={duration!r}"),
                    "qps * duration")


YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "nan", "inf", "y", "n"}


@FUZZ
@given(metric=st.from_regex(r"[a-z]{1,10}(_p[0-9]{2,3})?", fullmatch=True)
       .filter(lambda m: not is_known_metric(m) and m not in YAML_WORDS),
       where=st.sampled_from(["constraints", "objectives", "early_stop"]))
def test_an_unknown_metric_is_refused_at_load_with_the_known_ones(sandbox, metric, where):
    seen("metric", (where, metric))
    override = {"constraints": f"constraints=[{{metric: {metric}, max: 1}}]",
                "objectives": f"objectives=[{{name: {metric}, direction: minimize}}]",
                "early_stop": f"early_stop.metric={metric}"}[where]
    assert_rejected(run(sandbox, "--n-trials", "1", override), metric, "ttft_p99")


@FUZZ
@given(item=st.one_of(
    st.from_regex(r"zz[a-z]{1,6}\.[a-z]{1,6}=[0-9]", fullmatch=True),            # keys the space has not
    st.from_regex(r"(load|timeouts)\.[a-z_]{1,6}=(\[|\{|x!)", fullmatch=True),   # values that do not parse or fit
    st.sampled_from(["load.qps=fast", "repeats=0", "sampler=annealing", "n_trials=-3", "params=7",
                     "params.pa_config.num_blocks.low=2048", "timeouts.ready=-1", "load=[1,2]", "objectives={}",
                     "embedded.nokey=1", "llm_serving=3", "prescreen={top_fraction: 2}", "~study", "=", "load.qps"])))
def test_a_bad_override_is_one_line(sandbox, item):
    seen("override", item)
    assert_rejected(run(sandbox, "--n-trials", "1", item))


def test_a_root_without_search_spaces_is_refused_not_ignored(sandbox, tmp_path):
    for root in (tmp_path, tmp_path / "nope", sandbox.root / "configs"):
        seen("root", str(root))
        assert_rejected(sandbox.tune("run", "--root", str(root), "--n-trials", "1"), "--root")
    assert list(tmp_path.iterdir()) == []


def test_llm_serving_host_checks_come_before_the_first_trial(sandbox, tmp_path):
    """No checkout, no interpreter, no npu-smi: said at once, nothing made (the stack's own preflight,
    tests/serving/stacks/test_llm_serving.py, checks each with a checkout that is there)."""
    cases = [["backend=llm_serving"],
             ["backend=llm_serving", f"llm_serving.root={tmp_path}"],
             ["backend=llm_serving", "llm_serving.accelerator=none", f"llm_serving.root={tmp_path}",
              "llm_serving.python=/no/such/python"],
             ["backend=llm_serving", "llm_serving.accelerator=npu", "llm_serving.npu_smi=/no/npu-smi"]]
    for case in cases:
        seen("backend options", tuple(case))
        r = run(sandbox, "--n-trials", "1", *case)
        assert_rejected(r, "llm_serving")
    assert "llm_serving.root" in r.err


# SLO, constraint and objective keys: a bound that is not a finite, positive number, a figure the
# stack cannot report (energy without a power probe, a utilisation where there is none): refused at
# load, naming the key, before the storage or any trial
CAPACITY = "objectives=[{name: capacity_rps, direction: maximize}]"
SLO_LATENCY = [f"{lat}_p{p}" for lat in ("ttft", "tpot", "e2e", "itl") for p in (50, 90, 99)]
not_positive = st.one_of(st.floats(max_value=0, allow_nan=False, allow_infinity=False),
                         st.sampled_from([float("nan"), float("inf"), float("-inf")]))


def hydra_number(v: float) -> str:
    return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))


@FUZZ
@given(key=st.sampled_from(SLO_LATENCY), bound=not_positive, other=st.sampled_from(SLO_LATENCY))
def test_an_slo_latency_bound_is_finite_and_positive(sandbox, key, bound, other):
    slo = {other: 1.0, key: bound}   # the bad one may sit beside a good one
    text = "{" + ", ".join(f"{k}: {hydra_number(v)}" for k, v in slo.items()) + "}"
    seen("slo", text)
    assert_rejected(run(sandbox, "--n-trials", "1", CAPACITY, f"slo={text}"), f"slo.{key}", "finite")


@FUZZ
@given(bound=st.one_of(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                       st.floats(min_value=1.0000001, allow_nan=False), st.just(float("nan"))))
def test_the_failed_slo_is_a_fraction(sandbox, bound):
    seen("slo", ("failed", bound))
    assert_rejected(run(sandbox, "--n-trials", "1", CAPACITY, f"slo={{ttft_p99: 1, failed: {hydra_number(bound)}}}"),
                    "slo.failed", "[0, 1]")


@FUZZ
@given(bounds=st.one_of(
    st.tuples(st.sampled_from(["min", "max"]), st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    .map(lambda t: f"{t[0]}: {hydra_number(t[1])}"),
    st.tuples(st.floats(-1e6, 1e6), st.floats(min_value=1e-6, max_value=1e6))
    .map(lambda t: f"min: {t[0] + t[1]!r}, max: {t[0]!r}")),        # min > max
    metric=st.sampled_from(["ttft_p99", "total_time", "throughput_rps", "requests_failed"]))
def test_a_constraint_bound_is_finite_and_ordered(sandbox, bounds, metric):
    seen("constraint", (metric, bounds))
    r = run(sandbox, "--n-trials", "1", f"constraints=[{{metric: {metric}, {bounds}}}]")
    assert_rejected(r, "constraints.0")
    assert "finite" in r.err or "min <= max" in r.err


@FUZZ
@given(metric=st.sampled_from(["energy_j", "energy_j_per_token"]),
       where=st.sampled_from(["objectives", "constraints", "early_stop"]),
       stack=st.sampled_from([["backend=embedded"], ["backend=sim"], ["backend=vllm", "vllm.device=gpu"],
                              ["backend=llm_serving", "llm_serving.accelerator=none"]]))
def test_energy_is_refused_where_no_power_is_measured(sandbox, metric, where, stack):
    override = {"objectives": f"objectives=[{{name: {metric}, direction: minimize}}]",
                "constraints": f"constraints=[{{metric: {metric}, max: 100}}]",
                "early_stop": f"early_stop.metric={metric}"}[where]
    seen("objective", (metric, where, tuple(stack)))
    only_time = [] if where == "objectives" else ["objectives=[{name: total_time, direction: minimize}]"]
    assert_rejected(run(sandbox, "--n-trials", "1", *stack, *only_time, override), metric, "power")


@FUZZ
@given(where=st.sampled_from(["objectives", "constraints"]),
       stack=st.sampled_from([["backend=vllm", "vllm.device=cpu"], ["backend=llm_serving", "llm_serving.accelerator=none"]]))
def test_no_utilisation_where_the_stack_has_none(sandbox, where, stack):
    override = {"objectives": "objectives=[{name: total_time, direction: minimize}, {name: utilisation, "
                              "direction: maximize}]",
                "constraints": "constraints=[{metric: utilisation, min: 10}]"}[where]
    seen("objective", ("utilisation", where, tuple(stack)))
    only_time = [] if where == "objectives" else ["objectives=[{name: total_time, direction: minimize}]"]
    r = run(sandbox, "--n-trials", "1", *stack, *only_time, override)
    assert_rejected(r, "utilisation", "constraints[0]" if where == "constraints" else "objectives[1]")


@FUZZ
@given(slo=st.dictionaries(st.sampled_from(SLO_LATENCY), st.floats(min_value=1e-6, max_value=1e6), min_size=1,
                           max_size=4),
       failed=st.one_of(st.none(), st.floats(min_value=0, max_value=1)))
def test_a_valid_slo_loads_and_is_in_the_fingerprint(sandbox, slo, failed):
    from tuner.study.identity import fingerprint
    if failed is not None:
        slo = {**slo, "failed": failed}
    text = "{" + ", ".join(f"{k}: {v!r}" for k, v in slo.items()) + "}"
    space = sandbox.load_space("pa_batching", sandbox.root, [CAPACITY, f"slo={text}"])
    assert fingerprint(space, sandbox.root)["slo"] == pytest.approx(slo)
