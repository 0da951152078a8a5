"""The study reads its trace through the formats, in its stack's tokens, and says so."""
import pytest

from serving.config.errors import ConfigError
from serving.stacks.sim import SimStack
from tests.conftest import ROOT
from tests.tuner.workload import fixtures
from tuner.cli import main
from tuner.space.compose import load_space
from tuner.study.run import StudyRun


def test_a_sharegpt_trace_feeds_a_study_and_the_summary_names_format_and_counter(project_root):
    fixtures.sharegpt(project_root / "traces")
    space = load_space("pa_batching", project_root, ["trace=traces/sharegpt.json", "load.qps=10", "load.requests=4"])
    planned = StudyRun(space, project_root, "").planned()
    assert [r.prompt for _, r in planned.plan] == ["hello there friend", "why is the sky blue"] * 2
    text = planned.summary(space.load)
    assert "sharegpt format, 2 records read, 1 skipped (fewer than 2 turns)" in text
    assert "tokens counted with words" in text and "plan: 4 requests, poisson 10 req/s" in text


def test_trace_format_is_forced_from_the_command_line(project_root):
    fixtures.vllm(project_root / "traces")
    over = ["trace=traces/vllm.jsonl", "load.requests=2"]
    assert StudyRun(load_space("pa_batching", project_root, over), project_root, "").planned().tally.format == "vllm"
    space = load_space("pa_batching", project_root, [*over, "trace_format=jsonl"])
    with pytest.raises(ConfigError, match="field 'output_len'"):
        StudyRun(space, project_root, "").plan()
    with pytest.raises(ConfigError, match="trace_format must be one of"):
        load_space("pa_batching", project_root, ["trace_format=parquet"])


def test_tune_with_a_bad_trace_exits_2_in_one_line_and_creates_no_study(project_root, capsys):
    fixtures.lines(project_root / "traces/bad.jsonl", [{"prompt": "a", "output_len": 1}, "not json"])
    assert main(["--study", "pa_batching", "--root", str(project_root), "--no-progress",
                 "trace=traces/bad.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl: line 2" in err
    assert list((project_root / "trials").iterdir()) == []


LLAMA2 = ROOT.parent / "shared" / "thirdparty" / "mindformers" / "tests" / "utils" / "llama2_tokenizer" / "tokenizer.model"


class Llama2Sim(SimStack):
    """The simulator serving a LLaMA-2 tokenizer: what llm-serving's token_counter gives a study."""
    name = "sim_llama2"

    def token_counter(self, base_config, options):
        from serving.tokenizers import sentencepiece_counter
        return sentencepiece_counter(LLAMA2)


@pytest.mark.skipif(not LLAMA2.is_file(), reason=f"the LLaMA-2 tokenizer is not at {LLAMA2}")
def test_a_study_counts_and_synthesizes_in_its_stack_s_tokenizer(project_root):
    import sentencepiece as spm

    from serving.stacks import register_stack
    register_stack("sim_llama2", Llama2Sim)
    sp = spm.SentencePieceProcessor(model_file=str(LLAMA2))
    fixtures.mooncake(project_root / "traces")
    fixtures.sharegpt(project_root / "traces")
    for trace in ("mooncake.jsonl", "sharegpt.json"):
        space = load_space("pa_batching", project_root, ["backend=sim_llama2", f"trace=traces/{trace}",
                                                         "load.requests=3"])
        planned = StudyRun(space, project_root, "").planned()
        assert "tokens counted with sentencepiece tokenizer.model" in planned.summary(space.load)
        assert all(r.prompt_len == len(sp.encode(r.prompt)) for _, r in planned.plan)
    assert planned.plan[0][1].output_len == len(sp.encode("hi how are you"))
