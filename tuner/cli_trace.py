"""``tune trace``: look at a trace before tuning with it, or turn it into this project's JSON lines.

  tune trace stats FILE [--format F] [--tokenizer PATH | --study S]
  tune trace convert FILE --to out.jsonl [--force] [--format F] [--tokenizer PATH | --study S]

Token counts come from ``--tokenizer`` (a SentencePiece ``.model`` file, or a Hugging Face
model folder / ``tokenizer.json``), else the study's stack's tokenizer with ``--study``,
else the word count (the embedded engine's tokenizer).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from serving.config.errors import ConfigError


def register(sub) -> None:
    trace = sub.add_parser("trace", help="trace statistics and conversion (tune trace stats|convert FILE)")
    verbs = trace.add_subparsers(dest="verb", required=True)
    stats = verbs.add_parser("stats", help="requests, token length percentiles, arrival rate and burstiness, "
                             "prefix reuse, histograms")
    _common(stats)
    stats.add_argument("--no-histogram", action="store_true", help="figures only, no text histograms")
    stats.set_defaults(func=cmd_stats)
    conv = verbs.add_parser("convert", help="write the trace as this project's JSON lines "
                            '({"prompt", "output_len", "timestamp"?})')
    _common(conv)
    conv.add_argument("--to", type=Path, required=True, help="output .jsonl file")
    conv.add_argument("--force", action="store_true", help="overwrite --to if it exists")
    conv.add_argument("--seed", type=int, default=0, help="seed of synthesized prompts (length-only formats)")
    conv.set_defaults(func=cmd_convert)


def _common(p: argparse.ArgumentParser) -> None:
    from tuner.workload.formats import format_names
    p.add_argument("file", type=Path, help="the trace (any format tune reads)")
    p.add_argument("--format", default="auto", choices=format_names(), help="trace format (default: detected)")
    p.add_argument("--tokenizer", type=Path, help="count tokens with this SentencePiece .model file or Hugging "
                   "Face tokenizer (folder or tokenizer.json)")
    p.add_argument("--study", help="count tokens with this study's stack's tokenizer")
    p.add_argument("--root", type=Path, help="project directory holding search_spaces/ (with --study)")


def counter_of(args) -> Callable[[str], int] | None:
    from serving import tokenizers
    if args.tokenizer and args.study:
        raise ConfigError("--tokenizer or --study must be given, not both")
    if args.tokenizer:
        t = args.tokenizer
        if t.is_file() and t.suffix == ".model":
            return tokenizers.sentencepiece_counter(t)
        return tokenizers.hf_counter(t)
    if args.study:
        from serving.stacks import get_stack
        from tuner.space.compose import find_root, load_space
        root = find_root(args.root)
        space = load_space(args.study, root)
        return get_stack(space.backend).token_counter(root / space.base_config, space.backend_options())
    return None


def cmd_stats(args) -> int:
    from tuner.workload.stats import describe, trace_stats
    print(describe(trace_stats(args.file, args.format, counter_of(args)), bars=not args.no_histogram))
    return 0


def cmd_convert(args) -> int:
    from tuner.workload.trace import Tally, requests, write_trace
    out: Path = args.to
    if out.exists() and not args.force:
        raise ConfigError("the output must not exist (or pass --force to overwrite it)", out)
    if not out.parent.is_dir():
        raise ConfigError("the output's folder must exist", out.parent)
    tally = Tally()
    t0: list[float] = []

    def rows():
        for item in requests(args.file, args.format, counter_of(args), args.seed, tally):
            row = {"prompt": item.request.prompt, "output_len": item.request.output_len}
            if item.timestamp is not None:
                t0[:] = t0 or [item.timestamp]
                row["timestamp"] = round(item.timestamp - t0[0], 6)
            yield row

    write_trace(rows(), out)
    print(f"wrote {out}: {tally.kept} requests from {tally.describe()}")
    return 0
