"""Word-level tokenizer over a generated vocabulary (no tokenizer file can be downloaded).

Token counts track word counts, close to what a LLaMA tokenizer gives for English
prompts, so a trace's lengths mean roughly the same to both stacks.
"""
from __future__ import annotations

import zlib

PAD, BOS, EOS = 0, 1, 2
_SPECIAL = 3
_CONS, _VOW = "bcdfghjklmnprstvwz", "aeiou"


class WordTokenizer:
    def __init__(self, vocab_size: int):
        if vocab_size <= _SPECIAL:
            raise ValueError(f"vocab_size > {_SPECIAL} must hold, got {vocab_size}")
        self.vocab_size = vocab_size
        self.words = ["<pad>", "<s>", "</s>"] + [self._word(i) for i in range(vocab_size - _SPECIAL)]
        self.index = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def _word(i: int) -> str:
        out = []
        while True:
            out.append(_CONS[i % len(_CONS)] + _VOW[(i // len(_CONS)) % len(_VOW)])
            i //= len(_CONS) * len(_VOW)
            if i == 0:
                return "".join(out)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = [self.index.get(w) or _SPECIAL + zlib.crc32(w.encode("utf-8", "surrogatepass")) % (self.vocab_size - _SPECIAL)
               for w in text.split()]
        return ([BOS] if bos else []) + ids

    def decode_one(self, token: int) -> str:
        return "" if token < _SPECIAL else " " + self.words[token]

    def decode(self, tokens: list[int]) -> str:
        return "".join(self.decode_one(t) for t in tokens)
