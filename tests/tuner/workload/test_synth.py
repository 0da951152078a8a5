import pytest

from serving.tokenizers import sentencepiece_counter, word_counter
from tests.conftest import ROOT
from tuner.workload.formats import BLOCK_TOKENS
from tuner.workload.synth import PromptSynth
from tuner.workload.trace import load_trace

LLAMA2 = ROOT.parent / "shared" / "thirdparty" / "mindformers" / "tests" / "utils" / "llama2_tokenizer" / "tokenizer.model"


def _sp():
    if not LLAMA2.is_file():
        pytest.skip(f"the LLaMA-2 tokenizer is not at {LLAMA2} (../shared/thirdparty not checked out)")
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=str(LLAMA2))


def test_word_prompts_have_the_exact_length_and_share_the_first_block():
    synth = PromptSynth(word_counter, seed=1)
    a, b = synth.prompt(700, (5, 6), key="0").split(), synth.prompt(900, (5, 7), key="1").split()
    assert (len(a), len(b)) == (700, 900)
    assert a[:BLOCK_TOKENS] == b[:BLOCK_TOKENS] and a[BLOCK_TOKENS:] != b[BLOCK_TOKENS:700]
    assert synth.prompt(3, (), key="x") == PromptSynth(word_counter, seed=1).prompt(3, (), key="x")


def test_llama2_prompts_have_the_exact_token_length_and_a_shared_512_token_prefix():
    sp = _sp()
    synth = PromptSynth(sentencepiece_counter(LLAMA2), seed=0)
    for n in (1, 17, 511, 512, 513, 2048):
        assert len(sp.encode(synth.prompt(n, (1, 2, 3, 4), key=str(n)))) == n
    a = sp.encode(synth.prompt(800, (42, 43), key="a"))
    b = sp.encode(synth.prompt(800, (42, 44), key="b"))
    assert a[:512] == b[:512]
    assert a[512:] != b[512:] and sum(x != y for x, y in zip(a[512:], b[512:])) > 200


def test_a_mooncake_trace_in_llama2_tokens_keeps_its_lengths_and_prefix_reuse(tmp_path):
    from tests.tuner.workload.fixtures import mooncake
    sp = _sp()
    trace = load_trace(mooncake(tmp_path), counter=sentencepiece_counter(LLAMA2))
    ids = [sp.encode(r.prompt) for r in trace]
    assert [len(i) for i in ids] == [r.prompt_len for r in trace] == [700, 600, 30]
    assert ids[0][:512] == ids[1][:512] and ids[0][512:600] != ids[1][512:600]


def test_a_tokenizer_that_splits_every_word_cannot_synthesize():
    with pytest.raises(ValueError, match="one token each"):
        PromptSynth(lambda text: len(text))
