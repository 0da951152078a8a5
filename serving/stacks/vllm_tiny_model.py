"""Writes a tiny LLaMA model folder vLLM can serve with ``load_format: dummy`` (random weights).

Run it with the vLLM venv's interpreter (it has ``transformers`` and ``tokenizers``; the tuner's
own venv may not):

    .venv-vllm/bin/python serving/stacks/vllm_tiny_model.py trials/_models/tiny_llama

Only ``config.json`` and a tokenizer are written; no weights are needed with dummy loading.
The sizes are the ones seen to work on vLLM's CPU build (shared/docs/vllm.md): head_dim 64
(256 / 4 heads); a head_dim of 16 is refused by its CPU attention.
This file imports nothing from the project, so any interpreter can run it as a script.
"""
from __future__ import annotations

import string
import sys
from pathlib import Path

DIMS = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=2048)
SPECIAL = ["<unk>", "<s>", "</s>"]


def vocabulary(size: int) -> dict[str, int]:
    """Special tokens, single characters, then filler words up to ``size`` entries."""
    words = SPECIAL + list(string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation)
    n = 0
    while len(words) < size:
        words.append(f"w{n}")
        n += 1
    return {w: i for i, w in enumerate(words[:size])}


def write_tiny_llama(out: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(DIMS["vocab_size"])
    # architectures names the generating model: without it vLLM resolves LlamaModel (no LM head)
    LlamaConfig(**DIMS, architectures=["LlamaForCausalLM"], torch_dtype="float32", bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
                tie_word_embeddings=False).save_pretrained(out)
    # word-level: every whitespace- or punctuation-separated piece is one token (unknown ones <unk>)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            model_max_length=DIMS["max_position_embeddings"]).save_pretrained(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: vllm_tiny_model.py OUTPUT_FOLDER")
    print(write_tiny_llama(Path(sys.argv[1])))
