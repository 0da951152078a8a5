"""`tune calibrate` for llm-serving: the simulator's decode host terms fitted to the decode steps
the replays show (tuner.tools.calibrate_replays). Here on trials the simulator itself ran with known
terms (the fit must find them again); on the real llm-serving in
tests/serving/stacks/test_llm_serving_real.py."""
import json
from pathlib import Path

import pytest
import yaml

from serving.sim.profile_io import load_profile, profile_path
from tuner.cli import main
from tuner.screening.prescreen import sim_space
from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.tools.calibrate_replays import MEASURED, client_steps, diagonal, medians, write_refit
from tuner.screening.prescreen import first_objective, simulate_params

STUDY = "pa_batching_llm_serving"
EMULATED = "llm_serving.emulate_profile=ascend910b_llama2_7b"
TRUTH = {"base": 0.006, "per_row": 0.0005, "per_live_row": 0.0003}   # the 910B profile: 16.6, 0, 1.1 ms


@pytest.fixture
def project_root(project_root):
    """The project copy with no tokenizer named in llm-serving's base config (the trace's word counts):
    mindformers' SentencePiece model is where CI builds the real stack, not needed by these tests."""
    from serving.config.render import render
    base = project_root / "configs" / "llama" / "llama_7b_kbk_pa_llm_serving.yaml"
    render(base, {"tokenizer.vocab_file": None}, base)
    return project_root


def _measured_by_the_simulator(root: Path, out: Path, host: dict[str, float]) -> list[dict]:
    """The diagonal's trials as a simulator with ``host`` terms runs them, kept as `calibrate` keeps
    its own (measured.json, each trial's folder): what it would have measured on a stack that is
    exactly that simulator."""
    space = load_space(STUDY, root, [EMULATED])
    truth = write_refit(profile_path("ascend910b_llama2_7b"), host, "# truth", out / "truth.yaml")
    on_sim = sim_space(space, root, {"profile": str(truth)})
    plan = StudyRun(space, root, "").plan()
    rows = []
    for i, p in enumerate(diagonal(space)):
        o = simulate_params(on_sim, root, p, plan, run_dir=out / f"pass0_{i}")
        rows.append({"params": p, "run": f"pass0_{i}", "value": first_objective(on_sim, o), "fail": None})
    (out / MEASURED).write_text(json.dumps(rows))
    return rows


def test_the_diagonal_runs_from_every_first_value_to_every_last(project_root):
    space = load_space(STUDY, project_root, [EMULATED])
    picks = diagonal(space)
    specs = space.param_specs()
    assert picks[0] == {k: s.grid()[0] for k, s in specs.items()}
    assert picks[-1] == {k: s.grid()[-1] for k, s in specs.items()}
    assert len(picks) == len({json.dumps(p, sort_keys=True) for p in picks}) >= 3
    decode = [p["model_config.decode_batch_size"] for p in picks]
    assert decode == sorted(decode) and len(set(decode)) == len(decode)


def test_refit_finds_the_host_terms_again_and_the_study_simulates_with_them(project_root, tmp_path, capsys):
    kept = tmp_path / "kept"
    kept.mkdir()
    rows = _measured_by_the_simulator(project_root, kept, TRUTH)
    assert len({r["value"] for r in rows}) == len(rows)   # the configurations differ: there is something to fit
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), "--from", str(kept), EMULATED]) == 0
    out = project_root / "trials" / STUDY / "sim_profile.yaml"
    fitted = load_profile(out)
    for term, value in TRUTH.items():
        assert fitted.decode_host[term] == pytest.approx(value, rel=0.05, abs=2e-5), (term, fitted.decode_host)
    shipped = load_profile("ascend910b_llama2_7b")
    # only the host terms moved: device time, prefill, request delays and tokenizer are the profile's
    assert fitted.decode_compute == shipped.decode_compute and fitted.prefill_host == shipped.prefill_host
    assert fitted.arrival_delay == shipped.arrival_delay and fitted.single_prefill
    text = out.read_text()
    assert text.startswith("# decode.host fitted by `tune calibrate --study pa_batching_llm_serving`")
    assert "Split compute/host" in text                     # the source's comments, kept
    assert yaml.safe_load(text)["tokenizer"]["name"] == "LLaMA-2 SentencePiece"
    err = capsys.readouterr().out
    assert "decode.host base 16.60 -> " in err and f"wrote {out}" in err
    assert "total time simulated vs measured: mean error 0." in text   # the same simulator: all but exact
    # the study's surrogate now simulates with it; a profile the space names still wins
    space = load_space(STUDY, project_root, [EMULATED])
    assert sim_space(space, project_root).backend_options()["profile"] == str(out)
    named = load_space(STUDY, project_root, [EMULATED, "+sim.profile=embedded"])
    assert sim_space(named, project_root).backend_options()["profile"] == "embedded"


def test_a_decode_step_is_a_burst_of_tokens():
    import pandas as pd
    # two requests decoding together (steps at 0.10, 0.15, 0.21), then one alone (0.30); request 1's
    # first token at 0.05 is its prefill, and the step after a prefill (0.10: its time holds the
    # prefill's host work) is left out with it
    frame = pd.DataFrame({"prompt_len": [10, 20], "token_times": ["0.0;0.1001;0.1503;0.2102;0.30", "0.05;0.1;0.15;0.21"]})
    steps = client_steps(frame, buckets=[4])
    assert [(s["rows"], s["bucket"]) for s in steps] == [(2, 4), (2, 4), (1, 4)]
    assert [round(s["duration"], 3) for s in steps] == [0.05, 0.06, 0.09]
    assert steps[0]["context"] == (10 + 2) + (20 + 2) and steps[-1]["context"] == 10 + 4
    assert [s["bucket"] for s in client_steps(frame, buckets=[1, 2, 8])] == [2, 2, 1]


def test_medians_leave_out_failures_and_pool_repeats():
    a, b = {"x": 1}, {"x": 2}
    rows = [{"params": a, "value": 3.0}, {"params": a, "value": 5.0}, {"params": a, "value": 4.0},
            {"params": b, "value": None, "fail": "crash_at_start: ..."}]
    assert medians(rows) == [(a, 4.0)]


@pytest.mark.parametrize("content, says", [
    (None, f"no {MEASURED} under"),
    ("{not json", "not valid JSON"),
    ({"params": {}}, "must hold a list of trials, each with its params"),
    ([{"params": {"model_config.decode_batch_size": 1}, "run": "gone", "value": 3.0, "fail": None},
      {"params": {"model_config.decode_batch_size": 2}, "run": "x", "value": None, "fail": "crash_at_start: boom"}],
     "at least 20 decode steps from trials that ran, got 0 from 1 trials (failures: ['crash_at_start: boom'])"),
])
def test_a_refit_without_enough_trials_is_one_line_and_writes_nothing(project_root, tmp_path, capsys, content, says):
    kept = tmp_path / "kept"
    kept.mkdir()
    if content is not None:
        (kept / MEASURED).write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), "--from", str(kept), EMULATED]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (project_root / "trials" / STUDY).exists()


def test_points_and_requests_are_refused_for_a_stack_with_its_own_step_records(project_root, capsys):
    assert main(["calibrate", "--study", "pa_batching", "--root", str(project_root), "--points", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--points and --requests are for a stack calibrated from its replays" in err
    assert not (project_root / "trials" / "_calibrate").exists()


def test_a_shortened_calibration_is_checked_on_the_replays_it_ran(project_root, tmp_path, capsys):
    """--requests N: the fit takes the steps of N-request replays, and its check simulates those N."""
    kept = tmp_path / "kept"
    kept.mkdir()
    space = load_space(STUDY, project_root, [EMULATED])
    truth = write_refit(profile_path("ascend910b_llama2_7b"), TRUTH, "# truth", kept / "truth.yaml")
    on_sim = sim_space(space, project_root, {"profile": str(truth)})
    plan = StudyRun(space, project_root, "").plan()[:6]
    rows = []
    for i, p in enumerate(diagonal(space, 3)):
        o = simulate_params(on_sim, project_root, p, plan, run_dir=kept / f"pass0_{i}")
        rows.append({"params": p, "run": f"pass0_{i}", "value": first_objective(on_sim, o), "requests": 6})
    (kept / MEASURED).write_text(json.dumps(rows))
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), "--from", str(kept), EMULATED]) == 0
    text = (project_root / "trials" / STUDY / "sim_profile.yaml").read_text()
    assert "mean error 0.0 %" in text and "(each replaying the first 6 requests)" in text, text[:600]


def test_totals_far_off_after_the_fit_are_warned_of(project_root, tmp_path, capsys):
    """Trials twice as long as their steps add up to: a device time that is not the stack's."""
    kept = tmp_path / "kept"
    kept.mkdir()
    rows = _measured_by_the_simulator(project_root, kept, TRUTH)
    (kept / MEASURED).write_text(json.dumps([r | {"value": 2 * r["value"]} for r in rows]))
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), "--from", str(kept), EMULATED]) == 0
    out = capsys.readouterr().out
    assert "calibrate: warning: the simulated total times are 50 % off on average" in out, out


def test_a_profile_that_does_not_load_is_refused_before_any_launch(project_root, capsys):
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), EMULATED,
                 "+sim.profile=/nowhere/p.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "latency profile not found" in err and "/nowhere/p.yaml" in err, err
    assert not (project_root / "trials" / "_calibrate").exists()
