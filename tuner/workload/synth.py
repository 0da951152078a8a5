"""Prompts of an exact token length, for traces that give lengths but no text.

Text is built from words that are one token each in the stack's tokenizer (checked with
its counter), joined by spaces, so ``n`` words are ``n`` tokens in a word-splitting
tokenizer (SentencePiece, byte-level BPE, the embedded engine's). A trace's ``hash_ids``
name 512-token blocks: each id always expands to the same words, so two requests that
share their first blocks share that prefix text and a prefix cache sees real reuse.
Every prompt is counted once more and trimmed or padded until it is exactly ``n``.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

from serving.tokenizers import word_counter
from tuner.workload.formats.base import BLOCK_TOKENS

_CANDIDATES = ("the of and to in is that for it as was with be by on not he this are or his from at which but have "
               "an had they you were their one all we can her has there been if more when will would who so no "
               "time people year way day man thing woman life child world school state family student group "
               "country problem hand part place case week company system program question work number night "
               "point home water room mother area money story fact month lot right study book eye job word "
               "business issue side kind head house service friend father power hour game line end member law "
               "car city community name president team minute idea kid body information back parent face others "
               "level office door health person art war history party result change morning reason research "
               "girl guy moment air teacher force education").split()
MIN_WORDS = 16
CACHED_BLOCKS = 1024


class PromptSynth:
    def __init__(self, counter: Callable[[str], int] | None = None, seed: int = 0, block_tokens: int = BLOCK_TOKENS):
        self.count = counter or word_counter
        self.seed, self.block_tokens = seed, block_tokens
        self.words = np.array([w for w in _CANDIDATES if self.count(w) == 1 and self.count(f"{w} {w} {w}") == 3])
        if len(self.words) < MIN_WORDS:
            raise ValueError(f"the tokenizer splits common words: only {len(self.words)} of {len(_CANDIDATES)} "
                             f"are one token each, >= {MIN_WORDS} are needed to synthesize prompts")
        self._blocks: dict[int, str] = {}

    def _draw(self, key: Sequence[int], n: int) -> list[str]:
        return self.words[np.random.default_rng([self.seed, *key]).integers(0, len(self.words), n)].tolist()

    def block(self, hash_id: int) -> str:
        """The text of block ``hash_id``, the same for every request that names it (drawn from the id,
        so the cache only saves time; it is bounded, as a long trace names many blocks)."""
        text = self._blocks.get(hash_id)
        if text is None:
            if len(self._blocks) >= CACHED_BLOCKS:
                self._blocks.pop(next(iter(self._blocks)))
            text = self._blocks[hash_id] = " ".join(self._draw((1, hash_id & 0xFFFFFFFFFFFFFFFF), self.block_tokens))
        return text

    def prompt(self, n_tokens: int, hash_ids: Sequence[int] = (), key: str = "") -> str:
        """A prompt of exactly ``n_tokens`` tokens: the blocks of ``hash_ids`` first, then words of its own
        (drawn from ``key``, e.g. the record's position, so the same trace gives the same prompts)."""
        full, part = divmod(n_tokens, self.block_tokens)
        parts = [self.block(h) for h in hash_ids[:full]]
        have = len(parts) * self.block_tokens
        if part and len(hash_ids) > full:
            parts.append(" ".join(self.block(hash_ids[full]).split(" ", part)[:part]))
            have += part
        own = (2, zlib.crc32(key.encode()))
        if have < n_tokens:
            parts.append(" ".join(self._draw(own, n_tokens - have)))
        text = " ".join(parts)
        extra = self._draw((*own, 1), 64)
        for k in range(64):         # a tokenizer that merged across words: trim or pad to the count
            got = self.count(text)
            if got == n_tokens:
                return text
            text = text.rsplit(" ", 1)[0] if got > n_tokens else f"{text} {extra[k]}"
        raise ValueError(f"could not synthesize a prompt of exactly {n_tokens} tokens (got {self.count(text)})")
