"""Acceptance: the tuner against the real MindSpore llm-serving (upstream commit 7342f33 with the
RUN_LEVEL<=5 forward stub, built by .ci/llm_serving.sh). A `tune` study end to end through the CLI,
the failure classes the real code can be made to show, and issue #14's mismatches, each checked
against what the real server does."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml

from serving.config.render import render
from serving.config.schema import load_serving_yaml
from serving.replay import ReplayOptions
from serving.stacks import LaunchError, LaunchSpec, get_stack, readback
from serving.stacks import llm_serving as ls
from serving.procs.groups import group_alive
from serving.workload import TraceRequest
from tests.serving.stacks.real_llm_serving import STUDY, require_real, tree_digest
from tuner.cli import main
from tuner.space.compose import load_space

pytestmark = pytest.mark.xdist_group("llm_serving_real")  # one worker runs the module: its real llm-serving stack is made once

@pytest.fixture(scope="module")
def real():
    paths = require_real()
    before = tree_digest(Path(paths["TUNER_LLMS_ROOT"]))
    yield paths
    # mismatch 6: nothing of any test here wrote into the checkout (no output/, logs, __pycache__)
    after = tree_digest(Path(paths["TUNER_LLMS_ROOT"]))
    assert after == before, f"the llm-serving checkout was modified: {sorted(set(after) ^ set(before))[:10]}"


def _requests_csv(run: Path):
    import pandas as pd   # here, not at the top: every xdist worker collects this module, few run it
    return pd.read_csv(run / "requests.csv")


def tune(root: Path, *overrides: str, n: int = 1) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{root}/trials/study.db"
    assert main(["--study", STUDY, "--root", str(root), "--storage", storage, "--no-progress",
                 f"n_trials={n}", "seed=0", *overrides]) == 0
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def assert_cleaned_up(run_dir: Path) -> None:
    pgids = json.loads((run_dir / "pids.json").read_text())
    assert pgids, "the launch recorded no process group"
    for name, pgid in pgids.items():
        assert not group_alive(pgid), f"{name} process group {pgid} left running"
    if (run_dir / "shm.json").exists():   # the server's shared memory is gone too
        shm = json.loads((run_dir / "shm.json").read_text())
        assert not [seg for seg in shm["mapped"] if Path(seg).exists()], shm


def test_two_trial_study_on_the_real_code(real, project_root):
    trials = tune(project_root, n=2)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:
        a, run = t.user_attrs, Path(t.user_attrs["run_dir"])
        assert "fail_class" not in a and max(t.system_attrs.get("constraints") or [0]) <= 0
        assert a["requests_ok"] == a["requests"] == 16 and a["requests_failed"] == 0
        assert 0 < a["ttft_p50"] < a["e2e_p50"] < a["total_time"] < 120
        # mismatch 2: accelerator none -> the stack's host CPU share is measured, and is no utilisation
        # (maximising it ranked best the trial that burned most CPU)
        assert a.get("utilisation") is None   # NaN, stored as None
        assert 0 < a["host_cpu_mean"] <= 100 and a["host_cpu_samples"] >= 1
        # mismatch 3 and token counts: every request got what the server generated, max_new_tokens
        # (the stub never emits EOS), the summary line of return_full_text is not one more token
        rec = _requests_csv(run)
        assert (rec["n_tokens"] == rec["output_len"]).all() and (rec["finish_reason"] == "length").all()
        assert a["tokens_out"] == rec["output_len"].sum()
        assert (rec["token_times"].str.count(";") + 1 == rec["n_tokens"]).all()
        # the real code ran: its own log lines, in this trial's folder (mismatch 6: cwd is the run dir)
        assert "all agents started" in (run / "agent.log").read_text()
        assert "Uvicorn running on http://127.0.0.1:" in (run / "server.log").read_text()
        assert (run / "output" / "server_app.log").exists() and (run / "output" / "agent_0.log").exists()
        cfg = load_serving_yaml(run / "llm_serving.yaml")
        assert cfg.model.decode_batch_size == [a["config"]["model_config.decode_batch_size"]]
        applied = json.loads((run / "applied.json").read_text())   # read back from the running processes
        assert applied["differences"] == [] and applied["unverified"] == [], applied
        assert Path(cfg.tokenizer["vocab_file"]).is_absolute() and Path(cfg.model.model_cfg_path).parent == run
        mc = yaml.safe_load((run / "model_config.yaml").read_text())["model"]["model_config"]
        assert (mc["num_blocks"], mc["block_size"]) == (a["config"]["pa_config.num_blocks"],
                                                        a["config"]["pa_config.block_size"])
        shm = json.loads((run / "shm.json").read_text())   # the Worker's segments were seen (and are gone)
        assert any(Path(seg).name.startswith("psm_") for seg in shm["mapped"]), shm
        assert_cleaned_up(run)


def test_start_without_run_level_is_crash_at_start_with_the_cause(real, project_root, monkeypatch):
    # with no RUN_LEVEL the agent loads the real model on an Ascend device this machine lacks
    monkeypatch.delenv("RUN_LEVEL", raising=False)
    [t] = tune(project_root, "llm_serving.run_level=null")
    a = t.user_attrs
    assert a["fail_class"] == "crash_at_start", a.get("fail_detail")
    assert "agent" in a["fail_detail"] and ":" in a["fail_detail"].split("before", 1)[1], a["fail_detail"]
    cause = a["fail_detail"].split(": ", 1)[1]
    assert cause in a["log_tail"]   # the exception line the real agent logged
    assert_cleaned_up(Path(a["run_dir"]))


def test_agent_port_in_use_is_port_in_use(real, project_root, monkeypatch):
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    taken = held.getsockname()[1]
    pick = ls.free_ports
    monkeypatch.setattr(ls, "free_ports", lambda n: pick(1) + [taken] * (n - 1))  # the agent's port is taken
    try:
        t, retry = tune(project_root)   # launched on "fresh" ports three times, then queued again
    finally:
        held.close()
    a = t.user_attrs
    assert t.state == optuna.trial.TrialState.FAIL and a["fail_class"] == "port_in_use", a.get("fail_detail")
    assert retry.state == optuna.trial.TrialState.WAITING and retry.user_attrs["retry_of"] == t.number
    assert "Address already in use" in a["log_tail"]
    assert_cleaned_up(Path(a["run_dir"]))


def test_server_killed_mid_replay_is_crash_during_replay(real, project_root):
    killed = threading.Event()

    def killer():
        # once the replay's streams reach the server (after the warm-up's one /generate), SIGKILL the
        # server process (its leader only: its resource tracker then frees the shared memory)
        end = time.monotonic() + 600
        while time.monotonic() < end and not killed.is_set():
            # trials/<study>-<uid8>/0/: the study's folder is named once the study exists
            trials_dir = next((project_root / "trials").glob(f"{STUDY}-*/0"), project_root / "missing")
            log = trials_dir / "server.log"
            if (trials_dir / "pids.json").exists() and log.exists() and log.read_text().count("generate_stream") >= 3:
                os.kill(json.loads((trials_dir / "pids.json").read_text())["server"], signal.SIGKILL)
                killed.set()
            time.sleep(0.05)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        [t] = tune(project_root, "load.duration=4")
    finally:
        killed.set()
        th.join(5)
    a = t.user_attrs
    assert a["fail_class"] == "crash_during_replay", a.get("fail_detail")
    assert "stack exited during the replay" in a["fail_detail"]
    assert 0 < a["requests_failed"] <= a["requests"]
    assert_cleaned_up(Path(a["run_dir"]))


def test_bare_run_prints_each_level_of_the_real_code(real, project_root, capsys):
    # RUN_LEVEL 1-4 come from serving/stacks/patches/llm-serving-run-levels.patch, 5 from the thirdparty patch
    assert main(["bare-run", "--study", STUDY, "--root", str(project_root), "load.qps=4", "load.duration=1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5], out
    assert "FAILED" not in out and "FAKE_DISPATCHER" in out and "real model forward" not in out  # no accelerator here
    exec_times = [float(r[2]) for r in rows]
    assert all(0 < t < 60 for t in exec_times), out


def test_emulated_device_time_is_waited_per_step(real, project_root):
    # a profile whose decode step keeps the device 0.1 s: every token then takes at least that long,
    # which this code never takes by itself (a stubbed step is a few ms here)
    profile = project_root / "slow_device.yaml"
    profile.write_text(yaml.safe_dump({"name": "slow_device", "prefill": {"compute": {"base": 0.05}},
                                       "decode": {"compute": {"base": 0.08, "per_live_row": 0.02}}}))
    [t] = tune(project_root, f"llm_serving.emulate_profile={profile}", "load.qps=2", "load.duration=1",
               "params.model_config.decode_batch_size.choices=[1]")
    a, run = t.user_attrs, Path(t.user_attrs["run_dir"])
    assert "fail_class" not in a, a.get("fail_detail")
    step = json.loads((run / "emulate_step.json").read_text())
    assert step["decode"]["base"] == 0.08 and step["decode"]["per_live_row"] == 0.02
    rec = _requests_csv(run)
    assert (rec["n_tokens"] == rec["output_len"]).all()
    assert a["tpot_p50"] >= 0.1, a["tpot_p50"]
    assert_cleaned_up(run)


def test_calibrate_fits_the_simulator_to_whole_trials_of_the_real_code(real, project_root, capsys):
    """`tune calibrate` on llm-serving: the space's diagonal launched (its 2 ends here, each replaying the
    study's first 16 requests), each trial kept, the 910B profile's decode host terms fitted to what this
    host's serving layer adds around the emulated device time, and the study's pre-screen simulating with it."""
    narrow = ["llm_serving.emulate_profile=ascend910b_llama2_7b"]
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), "--points", "2", "--requests", "16",
                 *narrow]) == 0
    kept = project_root / "trials" / "_calibrate" / STUDY
    measured = json.loads((kept / "measured.json").read_text())
    assert [m["params"]["model_config.decode_batch_size"] for m in measured] == [1, 16], measured
    assert all(m["fail"] is None and m["value"] > 0 and m["requests"] == 16 for m in measured), measured
    # 16 requests one at a time take longer (8 did not on every host: at ~3 ms a padded row, a slow host's
    # batch of 16 cost about what it saved over 8 requests, 15.6 s against 14.8 s; 16: 18.0 s against 37.8 s)
    assert measured[0]["value"] > measured[1]["value"]
    assert len(_requests_csv(kept / "pass0_0")) == 16
    for run in kept.glob("pass0_*"):
        assert_cleaned_up(run)
    out = capsys.readouterr().out
    after = [float(line.rsplit("(", 1)[1].split(" %")[0]) for line in out.splitlines() if "simulated" in line]
    assert len(after) == 2 and all(abs(e) < 15 for e in after), out   # the totals of those replays, near each
    profile = project_root / "trials" / STUDY / "sim_profile.yaml"
    from serving.sim.profile_io import load_profile
    from tuner.screening.prescreen import sim_space
    assert load_profile(profile).decode_host != load_profile("ascend910b_llama2_7b").decode_host
    space = load_space(STUDY, project_root, narrow)
    assert sim_space(space, project_root).backend_options()["profile"] == str(profile)


def test_seq_type_dyn_means_what_llm_serving_does(real, tmp_path):
    # mismatch 5: 'dyn' is accepted with llm-serving's meaning (pad to the longest prompt); on kbk with
    # PagedAttention the real agent then crashes on its first batch, so the stack rejects it before launch
    root = Path(__file__).resolve().parents[3]
    space = load_space(STUDY, root)
    config = tmp_path / "dyn.yaml"
    render(root / space.base_config, {"model_config.seq_type": "dyn"}, config)
    cfg, stack, opts = load_serving_yaml(config), get_stack("llm_serving"), space.backend_options()
    assert cfg.model.seq_type == "dyn" and cfg.model.pads_to_prompt
    [rule] = stack.check(cfg, 100, opts)
    assert "seq_type 'static' and seq_length [1024] must hold" in rule and "'dyn'" in rule
    with pytest.raises(LaunchError) as err:   # the rule is the real code's: bypass it and launch
        stack.launch(LaunchSpec(config, tmp_path / "run", 180.0, None, opts))
    assert err.value.fail_class == "crash_at_start", err.value.detail
    assert "could not broadcast input array" in err.value.detail
    assert_cleaned_up(tmp_path / "run")


# ---- one real stack for the checks that only send requests --------------------------------------

@pytest.fixture(scope="module")
def running(real, tmp_path_factory):
    root = Path(__file__).resolve().parents[3]
    space = load_space(STUDY, root)
    tmp = tmp_path_factory.mktemp("real-stack")
    stack, opts = get_stack("llm_serving"), space.backend_options()
    config = tmp / "config.yaml"
    # a short seq_length keeps the token counter's boundary requests (about seq_length tokens each) quick
    render(root / space.base_config, {"model_config.decode_batch_size": 4, "model_config.seq_length": 256,
                                      "pa_config.decode_seq_length": 256}, config)
    rs = stack.launch(LaunchSpec(config, tmp / "run", 180.0, None, opts))
    try:
        yield rs, stack.token_counter(root / space.base_config, opts), load_serving_yaml(config)
    finally:
        rs.stop()
        assert_cleaned_up(tmp / "run")


def replay(rs, reqs: list[TraceRequest], **params):
    opts = ReplayOptions(stream=True, parameters={"do_sample": False, "return_full_text": True, **params},
                         request_timeout=60)
    return rs.replay([(0.05 * i, r) for i, r in enumerate(reqs)], opts, deadline=120).records


def test_stream_without_finish_reason_ends_with_the_connection(running):
    # mismatch 4: with return_full_text false no line carries finish_reason; what arrived is counted
    rs, count, _ = running
    reqs = [TraceRequest(i, p, n, count(p)) for i, (p, n) in enumerate([("Give three tips for staying healthy.", 7),
                                                                          ("Describe an atom:", 12)])]
    for full in (False, True):
        recs = replay(rs, reqs, return_full_text=full)
        assert all(r.ok for r in recs), [r.error for r in recs]
        assert [r.n_tokens for r in recs] == [7, 12] and [len(r.token_times) for r in recs] == [7, 12]
        assert [r.finish_reason for r in recs] == ([None, None] if not full else ["length", "length"])


def test_token_counter_counts_the_prompt_as_the_server_does(running):
    # the server rejects a request when its prompt tokens (+ BOS) + max_new_tokens >= seq_length[-1]
    # (Error202, schedule.py): at our count the boundary falls exactly where the server puts it
    rs, count, cfg = running
    seq = cfg.model.seq_length[-1]
    prompts = ["Give three tips for staying healthy.", "Translate the following sentence into French: "
               "'Où est la bibliothèque?' naïve café", "Write a poem about autumn leaves:\n\tred, gold, 1234567"]
    for p in prompts:
        n = count(p)
        assert n > len(p.split()) // 2
        edge = seq - (n + 1)
        fits, over = replay(rs, [TraceRequest(0, p, edge - 1, n), TraceRequest(1, p, edge, n)])
        assert fits.ok and fits.finish_reason == "length" and fits.n_tokens == edge - 1, (p, n, fits)
        assert over.finish_reason == "prompt_out_of_range", (p, n, over)


def test_shipped_space_extremes_are_what_llm_serving_runs(real, tmp_path):
    """search_spaces/pa_batching_llm_serving.yaml at all its low ends, then all its high ends: what the
    server and agent loaded (their own --config, the agent's model YAML pool) equals the trial's config."""
    root = Path(__file__).resolve().parents[3]
    space = load_space(STUDY, root)
    stack, opts = get_stack("llm_serving"), space.backend_options()
    low, high = {}, {}
    for key, spec in space.param_specs().items():
        low[key], high[key] = ((spec.choices[0], spec.choices[-1]) if spec.type == "categorical"
                               else (int(spec.low), int(spec.high)))
    took = {}
    for name, trial in (("low", low), ("high", high)):
        config = tmp_path / f"{name}.yaml"
        render(root / space.base_config, trial, config)
        assert stack.check(load_serving_yaml(config), 100, opts) == [], (name, trial)
        t = time.monotonic()
        running = stack.launch(LaunchSpec(config, tmp_path / name, 180.0, None, opts))
        try:
            record = readback.verify(running, config, list(trial), tmp_path / name)
        finally:
            running.stop()
        took[name] = round(time.monotonic() - t, 1)
        assert record["differences"] == [] and record["unverified"] == [], (name, record)
        pool = {r["source"] for r in record["readings"] if r["key"] == "pa_config.num_blocks"}
        assert "the agent's model YAML model_config.yaml" in pool, pool
        assert_cleaned_up(tmp_path / name)
    print("llm-serving extremes launched and read back in", took, "s")
