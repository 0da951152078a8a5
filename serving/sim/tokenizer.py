"""The simulator's token counter: a trace's lengths in the tokens of the model its latency profile
describes (the 910B LLaMA-2-7B profile: LLaMA-2's SentencePiece), as the real stack would count them.

Looked for in order: ``sim.tokenizer`` (a path, or ``words``); the base config's own
``tokenizer.vocab_file`` when it names an existing file; the profile's ``tokenizer.file`` (in its
``search`` folders, ``$TUNER_MINDFORMERS_ROOT`` for LLaMA-2's). Where none is found the count is
in whitespace words, and the counter's name says which tokenizer was wanted and how to give it.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from serving.config.errors import ConfigError
from serving.config.schema import load_serving_yaml
from serving.sim.profile_io import profile_path
from serving.sim.profile_schema import Tokenizer
from serving.tokenizers import TokenCounter, file_counter, word_counter


def _profile_tokenizer(profile: str) -> Tokenizer | None:
    path = profile_path(profile)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None       # the launch reports a missing or broken profile, with its path
    section = data.get("tokenizer") if isinstance(data, dict) else None
    return Tokenizer.model_validate(section) if isinstance(section, dict) else None


def _find(tok: Tokenizer) -> Path | None:
    file = Path(os.path.expandvars(tok.file)).expanduser()
    if file.is_absolute():
        return file if file.exists() else None
    for folder in tok.search:
        folder = os.path.expandvars(folder)
        if "$" in folder or not folder:
            continue      # an unset variable: not a place to look
        cand = Path(folder).expanduser() / file
        if cand.exists():
            return cand
    return None


def sim_counter(base_config: Path, profile: str, tokenizer: str | None) -> TokenCounter | None:
    """The counter for a simulated study; None for a profile of a word-tokenized model (the embedded one)."""
    if tokenizer == "words":
        return word_counter
    if tokenizer:
        return file_counter(tokenizer, "sim.tokenizer")
    try:
        vocab = (load_serving_yaml(base_config).tokenizer or {}).get("vocab_file")
    except ConfigError:
        vocab = None      # the base config's own errors are reported where it is loaded
    if isinstance(vocab, str) and Path(vocab).is_absolute() and Path(vocab).is_file():
        return file_counter(vocab, "tokenizer.vocab_file")
    tok = _profile_tokenizer(profile)
    if tok is None:
        return None
    found = _find(tok)
    if found is not None:
        counter = file_counter(found, "sim profile tokenizer.file")
        return TokenCounter(f"{tok.name} ({counter.name})", counter.count)
    where = ", ".join(tok.search) or "no search folder"
    return TokenCounter(f"{word_counter.name}: the profile's {tok.name} tokenizer ({tok.file} in {where}) was not "
                        f"found; give it with sim.tokenizer=PATH", word_counter.count)
