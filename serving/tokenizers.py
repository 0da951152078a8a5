"""Token counters: how many tokens a text is in the tokenizer a stack serves with.

A trace's prompt and output lengths mean tokens of the served model, so a stack names
its counter (``Stack.token_counter``): llm-serving's LLaMA SentencePiece model
(``sentencepiece_counter``), a Hugging Face tokenizer for vLLM (``hf_counter``), or the
embedded engine's word count (``word_counter``). Counts never include BOS/EOS, as
``TraceRequest.prompt_len`` does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from serving.config.errors import ConfigError

__all__ = ["TokenCounter", "word_counter", "sentencepiece_counter", "hf_counter", "file_counter", "counter_name"]


@dataclass(frozen=True)
class TokenCounter:
    """``count(text)`` tokens; ``name`` says which tokenizer (printed in trace summaries)."""
    name: str
    count: Callable[[str], int]

    def __call__(self, text: str) -> int:
        return self.count(text)


def _words(text: str) -> int:
    return len(text.split())


#: the embedded engine's tokenizer is one token per whitespace-separated word
word_counter = TokenCounter("words (whitespace split)", _words)


def counter_name(counter: Callable[[str], int] | None) -> str:
    """What a summary prints for ``counter`` (None: the word count)."""
    if counter is None:
        return word_counter.name
    return getattr(counter, "name", getattr(counter, "__name__", repr(counter)))


def sentencepiece_counter(path: str | Path) -> TokenCounter:
    """Counter over a SentencePiece model file (LLaMA's ``tokenizer.model``)."""
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise ConfigError("a SentencePiece model file must exist", path)
    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as err:
        raise ConfigError(f"not a SentencePiece model: {err}", path) from None
    # encode() adds no BOS/EOS unless asked, which is what a prompt length wants
    return TokenCounter(f"sentencepiece {path.name}", lambda text: len(sp.encode(text)))


def hf_counter(model_dir: str | Path) -> TokenCounter:
    """Counter over a Hugging Face tokenizer: ``tokenizer.json`` through ``tokenizers`` when that is
    importable, else ``transformers.AutoTokenizer`` (which also reads slow tokenizers)."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise ConfigError("a Hugging Face model folder (or tokenizer.json) must exist", model_dir)
    file = model_dir if model_dir.is_file() else model_dir / "tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:
        Tokenizer = None
    if Tokenizer is not None and file.is_file():
        tok = Tokenizer.from_file(str(file))
        return TokenCounter(f"tokenizers {file.parent.name}/{file.name}",
                            lambda text: len(tok.encode(text, add_special_tokens=False).ids))
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError("counting tokens with a Hugging Face tokenizer needs 'tokenizers' (with a "
                          "tokenizer.json) or 'transformers' installed, found neither", model_dir) from None
    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"no tokenizer could be loaded: {err}", model_dir) from None
    return TokenCounter(f"transformers {model_dir.name}",
                        lambda text: len(tok.encode(text, add_special_tokens=False)))


def file_counter(path: str | Path, key: str | None = None) -> TokenCounter:
    """A SentencePiece ``.model`` file, else a Hugging Face tokenizer (folder or tokenizer.json); ``key``
    names the setting that gave the path, for the error when it is not there."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError("a tokenizer (SentencePiece .model file, Hugging Face folder or tokenizer.json) must "
                          f"exist, found no {path}", None, key)
    return sentencepiece_counter(path) if path.suffix == ".model" else hf_counter(path)
