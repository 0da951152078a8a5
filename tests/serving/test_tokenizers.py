import pytest

from serving.config.errors import ConfigError
from serving.tokenizers import counter_name, hf_counter, sentencepiece_counter, word_counter
from tests.conftest import ROOT

LLAMA2 = ROOT.parent / "shared" / "thirdparty" / "mindformers" / "tests" / "utils" / "llama2_tokenizer" / "tokenizer.model"


def test_word_counter_counts_whitespace_separated_words():
    assert word_counter("Say hi:to  Bob\n") == 3 and counter_name(None) == counter_name(word_counter)


@pytest.mark.skipif(not LLAMA2.is_file(), reason=f"the LLaMA-2 tokenizer is not at {LLAMA2}")
def test_sentencepiece_counter_counts_llama2_tokens_without_bos():
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(LLAMA2))
    count = sentencepiece_counter(LLAMA2)
    text = "Give three tips for staying healthy: unbelievably, 1234 émigrés"
    assert count(text) == len(sp.encode(text)) and count(text) > len(text.split())
    assert count("hello") == 1 and "tokenizer.model" in count.name


def test_missing_or_bad_tokenizer_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="must exist"):
        sentencepiece_counter(tmp_path / "nope.model")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a SentencePiece model"):
        sentencepiece_counter(tmp_path / "junk.model")
    with pytest.raises(ConfigError, match="must exist"):
        hf_counter(tmp_path / "no_model")


def test_hf_counter_reads_a_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="the Hugging Face 'tokenizers' package is not installed")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    tok = tokenizers.Tokenizer(WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    count = hf_counter(tmp_path)
    assert count("hello world, hello") == 4 and "tokenizer.json" in count.name
