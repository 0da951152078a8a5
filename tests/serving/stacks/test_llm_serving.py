"""The llm_serving stack end to end against a stand-in checkout: `tune` runs trials, records
AI-core usage from (stand-in) npu-smi, and turns each fault into a classified FAIL trial with
no process left behind."""
import json
from pathlib import Path

import optuna
import pytest
import yaml

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.stacks import get_stack
from serving.procs.groups import group_alive
from tests.serving.stacks.standin import build_standin, write_base_config
from tuner.cli import main

STUDY = "pa_batching"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    si = build_standin(tmp_path / "standin")
    monkeypatch.setenv("PATH", f"{si.bin}:{__import__('os').environ['PATH']}")  # npu-smi for the probes
    return si


def tune(root: Path, standin, *overrides: str, n: int = 1, ready: float = 30) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{root}/trials/study.db"
    argv = ["--study", STUDY, "--root", str(root), "--storage", storage, "--no-progress",
            "backend=llm_serving", f"llm_serving.root={standin.root}", f"base_config={write_base_config(root)}",
            f"n_trials={n}", "load.qps=20", "load.duration=1", f"timeouts.ready={ready}", "timeouts.replay=60",
            "params.pa_config.num_blocks.low=64", "params.pa_config.num_blocks.high=256", *overrides]
    assert main(argv) == 0
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def assert_failed(trial) -> None:
    """FAIL, or COMPLETE but infeasible (a configuration's failure taught to the sampler as a broken constraint)."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        assert max(trial.system_attrs.get("constraints") or [0]) > 0, "a failed trial was recorded as feasible"
    else:
        assert trial.state == optuna.trial.TrialState.FAIL


def assert_cleaned_up(trial) -> None:
    pgids = json.loads((Path(trial.user_attrs["run_dir"]) / "pids.json").read_text())
    assert pgids, "the launch recorded no process group"
    for name, pgid in pgids.items():
        assert not group_alive(pgid), f"{name} process group {pgid} left running"


def test_tune_runs_trials_and_records_aicore_usage(project_root, standin):
    trials = tune(project_root, standin, n=2)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:
        a = t.user_attrs
        assert a["npu_aicore_mean"] == 57.0 and a["utilisation"] == 57.0 and a["npu_hbm_mean"] == 30.0
        assert a["npu_aicore_samples"] >= 1 and a["requests_ok"] == a["requests"] == 20
        assert "fail_class" not in a
        # energy: npu-smi -t power (90.5 W) integrated over the replay, per output token
        assert a["npu_power_mean"] == 90.5 and a["npu_power_joules"] == a["energy_j"] > 0
        assert a["energy_j_per_token"] == pytest.approx(a["energy_j"] / a["tokens_out"])
        run = Path(a["run_dir"])
        assert "all agents started" in (run / "agent.log").read_text()
        assert "Uvicorn running on http://127.0.0.1:" in (run / "server.log").read_text()
        cfg = load_serving_yaml(run / "llm_serving.yaml")
        assert cfg.serving_config.server_port != 8835 and cfg.serving_config.agent_ports != [16002]
        assert cfg.model.decode_batch_size == [t.user_attrs["config"]["model_config.decode_batch_size"]]
        # the device-side pool follows pa_config: a trial copy of the mindformers yaml
        assert Path(cfg.model.model_cfg_path) == run / "model_config.yaml"
        mc = yaml.safe_load((run / "model_config.yaml").read_text())["model"]["model_config"]
        assert (mc["num_blocks"], mc["block_size"], mc["seq_length"]) == (
            t.user_attrs["config"]["pa_config.num_blocks"], t.user_attrs["config"]["pa_config.block_size"], 1024)
        assert "# KV pages on the device" in (run / "model_config.yaml").read_text()  # comments kept
        # read back from the files each process was started with, and the agent's pool from its model YAML
        applied = json.loads((run / "applied.json").read_text())
        assert applied["differences"] == [] and applied["unverified"] == []
        sources = {r["source"] for r in applied["readings"] if r["key"] == "pa_config.num_blocks"}
        assert sources == {"the agent's --config llm_serving.yaml", "the server's --config llm_serving.yaml",
                           "the agent's model YAML model_config.yaml"}
        assert_cleaned_up(t)
    assert "num_blocks: 1024" in standin.model_yaml.read_text()  # the checkout itself is untouched


FAULTS = [
    ("oom_at_start", "oom", "exited with code 1"),
    ("oom_in_agent", "oom", "agent logged a Traceback"),     # launcher alive, never ready: caught by the log scan
    ("early_exit", "crash_at_start", "exited with code 0"),
    ("hang", "ready_timeout", "within timeouts.ready = 2 s"),
    ("port_in_use", "port_in_use", "Traceback"),
    ("server_crash", "crash_at_start", "server exited with code 1"),
    ("crash_mid_replay", "crash_during_replay", "stack exited during the replay"),
]


@pytest.mark.parametrize("fault,fail_class,detail", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_a_classified_failed_trial(project_root, standin, fault, fail_class, detail):
    t, *queued = tune(project_root, standin, f"+llm_serving.env.STANDIN_FAULT={fault}", ready=2 if fault == "hang" else 30)
    assert_failed(t)
    if fail_class == "port_in_use":   # the machine's failure: launched again on fresh ports, then re-queued
        assert sorted(p.name for p in Path(t.user_attrs["run_dir"]).glob("agent.log*")) == [
            "agent.log", "agent.log.try1", "agent.log.try2"]
        [retry] = queued
        assert retry.state == optuna.trial.TrialState.WAITING and retry.user_attrs["retry_of"] == t.number
    else:
        assert queued == []
    assert t.user_attrs["fail_class"] == fail_class, t.user_attrs.get("fail_detail")
    assert detail in t.user_attrs["fail_detail"]
    assert t.user_attrs["log_tail"]
    assert_cleaned_up(t)


def test_energy_per_token_can_be_an_objective(project_root, standin):
    [t] = tune(project_root, standin, "objectives=[{name: total_time, direction: minimize}, "
               "{name: energy_j_per_token, direction: minimize}]")
    assert t.state == optuna.trial.TrialState.COMPLETE and t.values[1] == t.user_attrs["energy_j_per_token"] > 0

def test_kv_cache_over_device_memory_is_rejected_with_the_rule(tiny_config):
    stack, cfg = get_stack("llm_serving"), load_serving_yaml(tiny_config)
    cfg = cfg.model_copy(update={"model_config_": cfg.model.model_copy(update={"seq_type": "static"})})
    assert stack.check(cfg, 100, {}) == []  # 64 blocks x 16 tokens: 0.5 GiB of LLaMA-2-7B KV
    big = cfg.model_copy(update={"pa_config": cfg.pa_config.model_copy(update={"num_blocks": 4096})})
    [rule] = stack.check(big, 100, {})      # 65,536 tokens x 512 KiB = 32 GiB, + 13.5 GiB of weights
    assert rule.startswith("KV cache bytes over device memory") and "45.50 GiB > 32 GiB" in rule
    assert stack.check(big, 100, {"device_memory_gb": 64}) == []
    assert stack.check(big, 100, {"num_layers": 2, "device_memory_gb": 16}) == []


def test_bad_options_name_the_key(tiny_config, tmp_path):
    from serving.stacks.base import LaunchSpec
    stack, cfg = get_stack("llm_serving"), load_serving_yaml(tiny_config)
    with pytest.raises(ConfigError, match="device_memory_gbb"):
        stack.check(cfg, 100, {"device_memory_gbb": 64})
    with pytest.raises(ConfigError, match="llm_serving.root must"):
        stack.launch(LaunchSpec(tiny_config, tmp_path, 5, None, {"root": str(tmp_path)}))
    assert not (tmp_path / "agent.log").exists()


@pytest.mark.parametrize("line,cls", [
    ("[ERROR] DEVICE(1,f,python) MallocStaticDevMem] Device(id:0) memory isn't enough and alloc failed, "
     "kernel name: kernel_graph_0, alloc size: 8589934592B.", "oom"),
    ("Memory_Allocation_Failure(EL0004): Failed to allocate memory requested by GE module.", "oom"),
    ("        Call rtMalloc fail, purpose: page caching, type = 2, size:3221291008, device_id:0", "oom"),
    ("TotalUsedMemStatistics : 24725382656 plus alloc size : 100555779072 is more than total mem size : 61079552000.",
     "oom"),
    ("RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB (NPU 0; 60.96 GiB total capacity)", "oom"),
    ("OSError: [Errno 98] Address already in use", "port_in_use"),
    ("ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8835): address already in use",
     "port_in_use"),
    ("RuntimeError: stand-in: LLMServer could not be built", "crash_at_start"),
])
def test_ascend_failure_lines_are_classified(line, cls):
    from serving.stacks import failures
    assert failures.classify_log("Traceback (most recent call last):\n" + line, "crash_at_start") == cls


@pytest.mark.parametrize("seq_type,seq_length,rule", [
    ("static", [1024], None),
    ("dyn", [1024], "seq_type 'static' and seq_length [1024] must hold"),
    ("static", [512, 1024], "seq_type 'static' and seq_length [1024] must hold"),
    ("dynamic", [1024], "llm-serving reads any seq_type but 'dyn' as static"),
])
def test_seq_type_rules_follow_the_real_agent(tiny_config, seq_type, seq_length, rule):
    # the real code's crash behind the kbk rule is shown in test_llm_serving_real.py
    cfg = load_serving_yaml(tiny_config)
    m = cfg.model.model_copy(update={"seq_type": seq_type, "seq_length": seq_length})
    out = get_stack("llm_serving").check(cfg.model_copy(update={"model_config_": m}), 100, {})
    rules = [r for r in out if "seq_type" in r]
    assert (rules == []) if rule is None else (len(rules) == 1 and rule in rules[0]), rules


def test_last_error_is_the_exception_line_after_the_traceback():
    from serving.stacks import failures
    log = ("noise\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
           "    raise ValueError('shape')\nValueError: could not broadcast input array from shape (8,) into (4096,)\n"
           "WARNING:root:Child 0 has exited\n")
    assert failures.last_error(log) == "ValueError: could not broadcast input array from shape (8,) into (4096,)"
    assert failures.last_error("no traceback here\nValueError: x") == ""


def test_emulation_passes_the_profiles_device_terms(tmp_path):
    from serving.stacks.llm_serving import emulate_step_file
    step = json.loads(emulate_step_file("ascend910b_llama2_7b", tmp_path).read_text())
    assert step["profile"] == "ascend910b_llama2_7b"
    assert step["decode"]["base"] == pytest.approx(0.0178) and step["decode"]["per_live_row"] == pytest.approx(0.0047)
    assert step["prefill"]["per_padded_token"] == pytest.approx(0.0001)
    with pytest.raises(ConfigError, match="measured tables"):
        emulate_step_file("embedded", tmp_path)


def test_levels_below_5_need_the_projects_patch(tmp_path):
    from serving.stacks.llm_serving import missing_patches, parse_options
    si = build_standin(tmp_path)
    assert missing_patches(parse_options({}), si.root) == []
    miss = missing_patches(parse_options({"run_level": 3}), si.root)
    assert any("llm-serving-run-levels.patch" in m and "run_level 3" in m for m in miss), miss
    assert any("llm-serving-run-level-5.patch" in m for m in miss), miss
    [five] = missing_patches(parse_options({"run_level": 5}), si.root)
    assert "llm-serving-run-level-5.patch" in five
    assert any("run_level 5 must hold" in m for m in missing_patches(parse_options({"emulate_profile": "x"}), si.root))


def test_preflight_names_what_the_host_lacks(tmp_path):
    stack, si = get_stack("llm_serving"), build_standin(tmp_path)
    [no_root] = stack.preflight({"accelerator": "none"})
    assert no_root.startswith("llm_serving.root must name the llm-serving checkout")
    assert stack.preflight({"root": str(si.root), "npu_smi": str(si.bin / "npu-smi")}) == []
    [no_smi] = stack.preflight({"root": str(si.root), "npu_smi": str(tmp_path / "no-npu-smi")})
    assert no_smi.startswith("llm_serving.npu_smi must name the npu-smi tool when accelerator=npu")
    assert stack.preflight({"root": str(si.root), "npu_smi": str(tmp_path / "no-npu-smi"), "accelerator": "none"}) == []
    bad = stack.preflight({"root": str(si.root), "python": str(tmp_path / "nope"), "run_level": 2,
                           "mindformers_root": str(tmp_path / "no-mf")})
    assert any("llm-serving-run-levels.patch" in m for m in bad)
    assert any(m.startswith("llm_serving.python must be an executable") for m in bad)
    assert any(m.startswith("llm_serving.mindformers_root must be a folder") for m in bad)


def test_read_back_names_a_pool_the_agent_was_not_given(tmp_path, standin, project_root):
    """The agent builds its device pool from the model YAML its --config names: a pool there that is not
    pa_config's fails the start as config_not_applied, key, expected and found named."""
    from serving.config.render import render
    from serving.stacks import LaunchError, LaunchSpec, failures, readback
    stack = get_stack("llm_serving")
    config = tmp_path / "config.yaml"
    base = project_root / write_base_config(project_root)
    render(base, {"pa_config.num_blocks": 100}, config)
    opts = stack.parse_options({"root": str(standin.root), "accelerator": "none"}).model_dump()
    running = stack.launch(LaunchSpec(config, tmp_path / "run", 30, None, opts))
    model_yaml = tmp_path / "run" / "model_config.yaml"
    model_yaml.write_text(model_yaml.read_text().replace("num_blocks: 100", "num_blocks: 99"))
    with pytest.raises(LaunchError) as err:
        readback.verify(running, config, ["pa_config.num_blocks", "pa_config.block_size"], tmp_path / "run")
    assert not running.alive() and err.value.fail_class == failures.CONFIG_NOT_APPLIED
    assert "pa_config.num_blocks: expected 100, found 99 (the agent's model YAML model_config.yaml)" in err.value.detail
