"""Before the first trial a study says what of its trace the stack cannot take, and how to leave it
out; it counts in its model's tokenizer and names it (issue 27, item 5)."""
import io
import json
import types

import pytest
from rich.console import Console

from serving.stacks.sim import SimStack
from serving.stacks.vllm import VLLMStack
from tests.conftest import ROOT
from tests.tuner.workload import fixtures
from tuner.cli import main
from tuner.space.compose import load_space
from tuner.space.spec import LoadSpec
from tuner.study.progress import outcome_line
from tuner.study.run import StudyRun
from tuner.workload.plan import build_plan
from tuner.workload.reading import ReadProgress

MINDFORMERS = ROOT.parent / "shared" / "thirdparty" / "mindformers"
LLAMA2 = MINDFORMERS / "tests" / "utils" / "llama2_tokenizer" / "tokenizer.model"


def _long_trace(folder, lengths):
    return fixtures.lines(folder / "long.jsonl", [{"timestamp": 10 * i, "input_length": n, "output_length": 8}
                                                  for i, n in enumerate(lengths)])


def test_the_summary_counts_requests_over_the_base_config_s_limits_and_says_how_to_leave_them_out(project_root):
    _long_trace(project_root / "traces", [100, 2000, 300, 5000, 900])    # tiny base: seq_length [1024]
    space = load_space("pa_batching", project_root, ["trace=traces/long.jsonl", "load.requests=5"])
    text = StudyRun(space, project_root, "").planned().summary(space.load)
    note = [line for line in text.splitlines() if line.startswith("preflight:")]
    assert len(note) == 1, text
    assert "2 of 5 planned requests (prompt + output 2008 to 5008 tokens) exceed the base config's limits" in note[0]
    # the largest that fits seq_length [1024] (prompt + BOS + output < 1024), not one below the next length
    assert "seq_length[-1] (1024)" in note[0] and "load.max_tokens=1022" in note[0]
    # following the hint leaves them out, counted, and the note is gone
    space = load_space("pa_batching", project_root, ["trace=traces/long.jsonl", "load.requests=3",
                                                     "load.max_tokens=1000"])
    planned = StudyRun(space, project_root, "").planned()
    assert [r.prompt_len for _, r in planned.plan] == [100, 300, 900]
    assert "2 skipped (prompt + output over load.max_tokens=1000)" in planned.summary(space.load)
    assert "preflight:" not in planned.summary(space.load)


def test_no_note_when_every_request_fits(project_root):
    _long_trace(project_root / "traces", [10, 20, 30])
    space = load_space("pa_batching", project_root, ["trace=traces/long.jsonl", "load.requests=3"])
    assert "preflight:" not in StudyRun(space, project_root, "").planned().summary(space.load)


def test_max_tokens_that_leaves_nothing_says_so(tmp_path):
    path = _long_trace(tmp_path, [500, 600])
    with pytest.raises(Exception, match="all 2 records read were skipped|trace holds no requests"):
        build_plan(path, LoadSpec(qps=1, requests=2, max_tokens=100))
    with pytest.raises(Exception, match="all 2 records read were skipped"):
        build_plan(path, LoadSpec(arrivals="trace", max_tokens=100))


def test_a_rejection_reason_is_printed_whole():
    detail = "; ".join(f"rule {i} must hold, got something long enough to matter" for i in range(12))
    outcome = types.SimpleNamespace(ok=False, metrics={}, fail_class="config_rejected", fail_detail=detail)
    line = outcome_line(outcome, ["total_time"], "infeasible")
    assert len(detail) > 400 and line.endswith(detail)


def _sim_space(project_root, *extra):
    fixtures.sharegpt(project_root / "traces")
    return load_space("pa_batching", project_root, ["backend=sim", "base_config=configs/llama/llama_7b_kbk_pa_dyn.yaml",
                                                    "trace=traces/sharegpt.json", "load.requests=2", *extra])


@pytest.mark.skipif(not LLAMA2.is_file(), reason=f"the LLaMA-2 tokenizer is not at {LLAMA2}")
def test_the_910b_profile_counts_with_llama2_sentencepiece_and_says_so(project_root, monkeypatch):
    import sentencepiece as spm
    monkeypatch.setenv("TUNER_MINDFORMERS_ROOT", str(MINDFORMERS))
    space = _sim_space(project_root)
    planned = StudyRun(space, project_root, "").planned()
    sp = spm.SentencePieceProcessor(model_file=str(LLAMA2))
    assert [r.prompt_len for _, r in planned.plan] == [len(sp.encode("hello there friend")),
                                                      len(sp.encode("why is the sky blue"))]
    assert "tokens counted with LLaMA-2 SentencePiece (sentencepiece tokenizer.model)" in planned.summary(space.load)


def test_without_the_profile_s_tokenizer_words_are_counted_and_the_summary_says_what_is_missing(project_root,
                                                                                                 monkeypatch):
    monkeypatch.delenv("TUNER_MINDFORMERS_ROOT", raising=False)
    space = _sim_space(project_root)
    text = StudyRun(space, project_root, "").planned().summary(space.load)
    assert "tokens counted with words (whitespace split): the profile's LLaMA-2 SentencePiece tokenizer" in text
    assert "sim.tokenizer=PATH" in text
    words = _sim_space(project_root, "sim.tokenizer=words")
    assert "tokens counted with words (whitespace split)\n" in StudyRun(words, project_root, "").planned().summary(
        words.load)


def test_the_embedded_profile_counts_words_as_the_embedded_engine_does(project_root):
    counter = SimStack().token_counter(project_root / "configs/llama/tiny_llama_pa.yaml", {})
    assert counter is None


def test_a_missing_sim_tokenizer_is_one_line(project_root):
    from serving.config.errors import ConfigError
    with pytest.raises(ConfigError, match="sim.tokenizer: a tokenizer .* must exist"):
        SimStack().token_counter(project_root / "configs/llama/llama_7b_kbk_pa_dyn.yaml",
                                 {"tokenizer": str(project_root / "nope.model")})


def test_vllm_s_counter_is_named_not_lambda(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    model = tmp_path / "model"
    model.mkdir()
    tok.save(str(model / "tokenizer.json"))
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    base = tmp_path / "vllm.yaml"
    base.write_text(f"model: {model}\n")
    counter = VLLMStack().token_counter(base, {})
    assert counter("hello world") == 2 and "lambda" not in counter.name and "tokenizer.json" in counter.name


def test_reading_progress_shows_after_a_second_and_never_with_no_progress(tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with ReadProgress(tmp_path / "t.jsonl", show=True, after=0.0, console=console) as meter:
        for _ in range(1000):
            meter()
        assert meter.shown
    assert "reading t.jsonl" in out.getvalue()
    quiet = io.StringIO()
    with ReadProgress(tmp_path / "t.jsonl", show=False, after=0.0,
                      console=Console(file=quiet, force_terminal=True)) as meter:
        for _ in range(1000):
            meter()
        assert not meter.shown
    assert quiet.getvalue() == ""
    with ReadProgress(tmp_path / "t.jsonl", show=True, after=60.0, console=console) as meter:
        for _ in range(1000):
            meter()
        assert not meter.shown          # a quick read shows nothing


def test_convert_never_writes_negative_times_and_says_the_order(tmp_path, capsys):
    src = fixtures.lines(tmp_path / "unsorted.jsonl", [{"prompt": "a b", "output_len": 2, "timestamp": t}
                                                       for t in (5.0, 1.0, 3.0)])
    out = tmp_path / "out.jsonl"
    assert main(["trace", "convert", str(src), "--to", str(out), "--no-progress"]) == 0
    times = [json.loads(line)["timestamp"] for line in out.read_text().splitlines()]
    assert times == [4.0, 0.0, 2.0]
    assert "timestamps out of order (1 records earlier than the one before): kept in file order" in \
        capsys.readouterr().out


def test_trace_stats_and_convert_read_a_gzip_trace(tmp_path, capsys):
    import gzip
    src = fixtures.mooncake(tmp_path)
    packed = tmp_path / "moon.jsonl.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()))
    assert main(["trace", "stats", str(packed), "--no-progress"]) == 0
    assert "(gzip-compressed): mooncake format, 3 records read" in capsys.readouterr().out
    out = tmp_path / "out.jsonl"
    assert main(["trace", "convert", str(packed), "--to", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3


def test_a_trace_whose_every_request_is_too_long_is_named_too(project_root):
    _long_trace(project_root / "traces", [3000, 5000, 9000])     # all over seq_length [1024]
    space = load_space("pa_batching", project_root, ["trace=traces/long.jsonl", "load.requests=3"])
    text = StudyRun(space, project_root, "").planned().summary(space.load)
    assert "preflight: 3 of 3 planned requests (prompt + output 3008 to 9008 tokens)" in text
    assert "load.max_tokens=1022" in text
