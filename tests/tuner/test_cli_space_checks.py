"""Objectives, SLOs and constraints are checked when the space is loaded, and what scores a trial
feasible is part of the study's fingerprint (export checks it too)."""
from pathlib import Path

import pytest

from tests.tuner.study.test_identity import SIM, trials
from tuner.cli import main
from tuner.space.compose import load_space
from serving.config.errors import ConfigError

CAPACITY = "objectives=[{name: capacity_rps, direction: maximize}]"


def refused(root: Path, *overrides: str, study: str = "pa_batching") -> str:
    with pytest.raises(ConfigError) as e:
        load_space(study, root, list(overrides))
    return str(e.value)


@pytest.mark.parametrize("bound", ["nan", "0", "0.0", "-1", "inf"])
def test_an_slo_latency_bound_is_finite_and_positive(project_root, bound):
    assert "slo.ttft_p99: a finite number of seconds > 0" in refused(project_root, CAPACITY, f"slo={{ttft_p99: {bound}}}")


@pytest.mark.parametrize("bound", ["nan", "-0.1", "1.5"])
def test_the_failed_slo_is_a_fraction(project_root, bound):
    assert "slo.failed: a fraction" in refused(project_root, CAPACITY, f"slo={{ttft_p99: 2, failed: {bound}}}")


def test_failed_zero_is_a_valid_slo(project_root):
    assert load_space("pa_batching", project_root, [CAPACITY, "slo={ttft_p99: 2, failed: 0}"]).slo["failed"] == 0


@pytest.mark.parametrize("bounds", ["max: nan", "min: nan", "max: inf", "min: -inf", "min: 2, max: 1"])
def test_a_constraint_bound_is_finite_and_ordered(project_root, bounds):
    err = refused(project_root, f"constraints=[{{metric: ttft_p99, {bounds}}}]")
    assert "constraints.0" in err and ("finite" in err or "min <= max" in err)


@pytest.mark.parametrize("where", ["objectives=[{name: energy_j, direction: minimize}]",
                                   "objectives=[{name: energy_j_per_token, direction: minimize}]",
                                   "constraints=[{metric: energy_j, max: 100}]"])
def test_energy_needs_a_stack_that_reports_power(project_root, where):
    for backend in ("embedded", "sim", "vllm"):   # none of them has a power probe
        assert "needs a stack that reports power" in refused(project_root, f"backend={backend}", where)
    # llm-serving on an accelerator has one (NVML's energy counter, npu-smi's power): accepted
    space = load_space("pa_batching_llm_serving", project_root, ["llm_serving.accelerator=gpu", where])
    assert space.backend == "llm_serving"


def test_no_cpu_share_to_maximise_on_a_cpu_host(project_root):
    # the shipped llm-serving study on a CPU host does not reward burning CPU
    space = load_space("pa_batching_llm_serving", project_root)
    assert [o.name for o in space.objectives] == ["total_time"]
    two = "objectives=[{name: total_time, direction: minimize}, {name: utilisation, direction: maximize}]"
    assert "host_cpu_mean" in refused(project_root, two, study="pa_batching_llm_serving")
    assert load_space("pa_batching_llm_serving", project_root, [two, "llm_serving.accelerator=npu"])
    assert "vllm.device is cpu" in refused(project_root, two, "backend=vllm", "vllm.device=cpu")


def test_the_stack_running_without_an_accelerator_has_no_utilisation():
    from serving.stacks.llm_serving import LLMServingRunning, parse_options
    running = LLMServingRunning.__new__(LLMServingRunning)
    running.opts = parse_options({"accelerator": "none"})
    assert running.utilisation is None
    running.opts = parse_options({"accelerator": "npu"})
    assert running.utilisation == "npu_aicore"


def test_a_study_refuses_another_slo_or_constraint(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    run = ["run", "--root", str(project_root), "--storage", storage, "--n-trials", "1", *SIM]
    assert main([*run, "constraints=[{metric: ttft_p99, max: 50}]"]) == 0
    capsys.readouterr()
    assert main([*run, "constraints=[{metric: ttft_p99, max: 0.001}]"]) == 2
    err = capsys.readouterr().err
    assert "constraints was" in err and "0.001" in err
    assert len(trials(storage)) == 1
    # export checks it too: the same study exported under another constraint is refused
    out = project_root / "configs/llama/x.yaml"
    export = ["export", "--root", str(project_root), "--storage", storage, "--to", str(out), *SIM[1:]]
    assert main([*export, "constraints=[{metric: ttft_p99, max: 0.001}]"]) == 2
    err = capsys.readouterr().err
    assert "constraints was" in err and "overrides it was run with" in err and not out.exists()
    assert main([*export, "constraints=[{metric: ttft_p99, max: 50}]"]) == 0 and out.is_file()


def test_a_capacity_study_refuses_another_slo(project_root, capsys):
    from tuner.study.identity import differences, fingerprint
    a = fingerprint(load_space("pa_batching", project_root, [CAPACITY, "slo={ttft_p99: 2}"]), project_root)
    b = fingerprint(load_space("pa_batching", project_root, [CAPACITY, "slo={ttft_p99: 3}"]), project_root)
    c = fingerprint(load_space("pa_batching", project_root, [CAPACITY, "slo={ttft_p99: 2}", "capacity.tolerance=0.1"]),
                    project_root)
    assert [d.split(" ")[0] for d in differences(a, b)] == ["slo"]
    assert [d.split(" ")[0] for d in differences(a, c)] == ["capacity"]
    old = {k: v for k, v in a.items() if k not in ("slo", "capacity", "constraints")}
    assert differences(old, b) == []   # a study stored before these keys: compared on the others
