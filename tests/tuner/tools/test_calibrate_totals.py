"""`tune calibrate` for llm-serving: the simulator's decode host terms fitted to whole trials
(tuner.tools.calibrate_totals). Here on trials the simulator itself made with known terms (the fit
must find them again); on the real llm-serving in tests/serving/stacks/test_llm_serving_real.py."""
import json
from pathlib import Path

import pytest
import yaml

from serving.sim.profile_io import load_profile, profile_path
from tuner.cli import main
from tuner.screening.prescreen import sim_space
from tuner.space.compose import load_space
from tuner.study.run import StudyRun
from tuner.tools.calibrate_totals import MEASURED, diagonal, fit_host, medians, write_refit
from tuner.screening.prescreen import first_objective, simulate_params

STUDY = "pa_batching_llm_serving"
EMULATED = "llm_serving.emulate_profile=ascend910b_llama2_7b"
TRUTH = {"base": 0.004, "per_live_row": 0.0025}     # the 910B profile has 16.6 ms and 1.1 ms


@pytest.fixture
def project_root(project_root):
    """The project copy with no tokenizer named in llm-serving's base config (the trace's word counts):
    mindformers' SentencePiece model is where CI builds the real stack, not needed by these tests."""
    from serving.config.render import render
    base = project_root / "configs" / "llama" / "llama_7b_kbk_pa_llm_serving.yaml"
    render(base, {"tokenizer.vocab_file": None}, base)
    return project_root


def _measured_by_the_simulator(root: Path, out: Path, host: dict[str, float]) -> list[dict]:
    """The diagonal's trials as a simulator with ``host`` terms runs them: what `calibrate` would
    have measured on a stack that is exactly that simulator."""
    space = load_space(STUDY, root, [EMULATED])
    truth = out / "truth.yaml"
    write_refit(profile_path("ascend910b_llama2_7b"), host, "# truth", truth)
    on_sim = sim_space(space, root, {"profile": str(truth)})
    plan = StudyRun(space, root, "").plan()
    rows = [{"params": p, "value": first_objective(on_sim, simulate_params(on_sim, root, p, plan)), "fail": None}
            for p in diagonal(space)]
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
        assert fitted.decode_host[term] == pytest.approx(value, rel=0.05), (term, fitted.decode_host)
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
    # the study's surrogate now simulates with it; a profile the space names still wins
    space = load_space(STUDY, project_root, [EMULATED])
    assert sim_space(space, project_root).backend_options()["profile"] == str(out)
    named = load_space(STUDY, project_root, [EMULATED, "+sim.profile=embedded"])
    assert sim_space(named, project_root).backend_options()["profile"] == "embedded"


def test_the_fit_reports_what_it_left(project_root):
    space = load_space(STUDY, project_root, [EMULATED])
    cases = [({"model_config.decode_batch_size": 1, "pa_config.num_blocks": 128, "pa_config.block_size": 16}, 30.0),
             ({"model_config.decode_batch_size": 16, "pa_config.num_blocks": 512, "pa_config.block_size": 64}, 14.0)]
    host, pairs = fit_host(space, project_root, profile_path("ascend910b_llama2_7b"), cases, log=lambda _: None)
    assert set(host) == {"base", "per_live_row"} and all(v >= 0 for v in host.values())
    assert [m for _, m in pairs] == [30.0, 14.0]
    assert all(abs(s / m - 1) < 0.1 for s, m in pairs), pairs


def test_medians_leave_out_failures_and_pool_repeats():
    a, b = {"x": 1}, {"x": 2}
    rows = [{"params": a, "value": 3.0}, {"params": a, "value": 5.0}, {"params": a, "value": 4.0},
            {"params": b, "value": None, "fail": "crash_at_start: ..."}]
    assert medians(rows) == [(a, 4.0)]


@pytest.mark.parametrize("content, says", [
    (None, f"no {MEASURED} under"),
    ([{"params": {"model_config.decode_batch_size": 1}, "value": 3.0, "fail": None}],
     "at least 2 configurations measured, got 1"),
])
def test_a_refit_without_enough_trials_is_one_line_and_writes_nothing(project_root, tmp_path, capsys, content, says):
    kept = tmp_path / "kept"
    kept.mkdir()
    if content is not None:
        (kept / MEASURED).write_text(json.dumps(content))
    assert main(["calibrate", "--study", STUDY, "--root", str(project_root), "--from", str(kept), EMULATED]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (project_root / "trials" / STUDY).exists()
