"""``tune profile``: the static benchmark of LMDeploy's profile_generation.py against a launched stack.

For each (concurrency, prompt tokens, completion tokens) cell, ``concurrency`` workers each send
``rounds`` requests back to back (closed loop) with a fixed prompt of N words (the embedded
tokenizer counts one token per word) and a fixed max_new_tokens. Per cell: first-token latency
min/mean/max, output tokens/s and requests/s over the cell's wall time (prefill included),
per-token latency P50/P75/P95/P99 (gaps between streamed tokens, the first token excluded, as
LMDeploy does), and the peak memory of the stack (RSS of its process groups (psutil), plus
the peak of any accelerator memory probe the stack offers).
"""
from __future__ import annotations

import asyncio
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
import numpy as np

from serving.config.errors import ConfigError
from serving.probes.base import ProbeSampler
from serving.probes.memory import GroupMemoryProbe
from serving.replay import ReplayOptions, Replayer
from serving.replay.client import run_loop   # a stop signal cancels the loop, raised once it closed
from serving.stacks import LaunchSpec, RunningStack, get_stack
from serving.workload import RequestRecord, TraceRequest
from tuner.runtime.ownership import TAG_ENV, command_tag
from tuner.space.spec import StudySpace

PCTS = (50, 75, 95, 99)


@dataclass(frozen=True)
class Cell:
    concurrency: int
    prompt_tokens: int
    completion_tokens: int


def make_cells(concurrency: list[int], prompt_tokens: list[int], completion_tokens: list[int]) -> list[Cell]:
    """Every concurrency times every (prompt, completion) pair; the two token lists pair up one to one."""
    if len(prompt_tokens) != len(completion_tokens):
        raise ConfigError(f"--prompt-tokens and --completion-tokens pair up, so equal lengths must hold, "
                          f"got {len(prompt_tokens)} and {len(completion_tokens)}")
    bad = [v for v in [*concurrency, *prompt_tokens, *completion_tokens] if v < 1]
    if bad:
        raise ConfigError(f"concurrency and token counts >= 1 must hold, got {bad}")
    return [Cell(c, p, o) for c in concurrency for p, o in zip(prompt_tokens, completion_tokens)]


def synth_prompt(n_words: int) -> str:
    """A prompt of exactly ``n_words`` words (so N prompt tokens plus BOS on the embedded tokenizer)."""
    words = "the quick brown fox jumps over a lazy dog while seven tired owls watch".split()
    return " ".join(words[i % len(words)] for i in range(n_words))


async def closed_loop(running: RunningStack, cell: Cell, rounds: int,
                      options: ReplayOptions) -> tuple[list[RequestRecord], float]:
    """``concurrency`` workers x ``rounds`` back-to-back requests; returns the records and the wall time."""
    req = TraceRequest(0, synth_prompt(cell.prompt_tokens), cell.completion_tokens, cell.prompt_tokens)
    replayer = Replayer(running.url, running.protocol, options)
    records: list[RequestRecord] = []
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=options.request_timeout, sock_read=options.request_timeout)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def worker(w: int) -> None:
            for k in range(rounds):
                rec = RequestRecord(w * rounds + k, req.prompt_len, req.output_len, 0.0)
                records.append(rec)
                # Replayer.send sends at once (scheduled 0 is past) and records every outcome
                await replayer.send(session, rec, req)

        replayer.t0 = start = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(cell.concurrency)))
        elapsed = time.monotonic() - start
    return records, elapsed


def cell_row(cell: Cell, rounds: int, records: list[RequestRecord], elapsed: float) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    first = np.array([r.first_token - r.sent for r in ok if r.first_token is not None])
    gaps = np.array([b - a for r in ok for a, b in zip(r.token_times, r.token_times[1:])])
    tokens = sum(r.n_tokens for r in ok)
    nan = math.nan
    row: dict[str, Any] = {
        "concurrency": cell.concurrency, "prompt_tokens": cell.prompt_tokens,
        "completion_tokens": cell.completion_tokens, "rounds": rounds,
        "requests": len(records), "requests_ok": len(ok), "elapsed_s": elapsed,
        "first_token_latency_min_s": float(first.min()) if first.size else nan,
        "first_token_latency_mean_s": float(first.mean()) if first.size else nan,
        "first_token_latency_max_s": float(first.max()) if first.size else nan,
        "output_tokens_per_s": tokens / elapsed if elapsed > 0 else nan,
        "total_tokens_per_s": (tokens + len(ok) * cell.prompt_tokens) / elapsed if elapsed > 0 else nan,
        "requests_per_s": len(ok) / elapsed if elapsed > 0 else nan,
    }
    for p in PCTS:
        row[f"token_latency_p{p}_s"] = float(np.percentile(gaps, p)) if gaps.size else nan
    errors = [r.error for r in records if r.error]
    row["error"] = f"{len(errors)} failed; first: {errors[0]}" if errors else ""
    return row


def profile(space: StudySpace, root: Path, cells: list[Cell], rounds: int, run_dir: Path,
            config: Path | None = None, warmup_rounds: int = 1, device_id: int | None = None,
            on_row: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Launch the study's stack once (its base config, or ``config``), profile every cell, stop it."""
    if rounds < 1:
        raise ConfigError(f"rounds >= 1 must hold, got {rounds}")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    stack, options = get_stack(space.backend), space.backend_options()
    if not stack.serves_http:
        raise ConfigError(f"backend {space.backend!r} serves no HTTP endpoint; profile needs a live stack")
    stack.config_format.render(Path(config) if config else root / space.base_config, {}, config_path)
    longest = max(c.prompt_tokens + 1 + c.completion_tokens for c in cells)
    broken = stack.check(stack.config_format.load(config_path), longest, options)
    if broken:
        raise ConfigError("; ".join(broken), config_path)
    opts = ReplayOptions(stream=True, parameters=dict(space.load.parameters),
                         request_timeout=space.load.request_timeout)
    tag = {TAG_ENV: command_tag(space.study, "profile")}  # a SIGKILLed profile's stack is ended next time
    running = stack.launch(LaunchSpec(config_path, run_dir, space.timeouts.ready, device_id, options, tag))
    rows = []
    try:
        pgids = running.pgids
        mem_probes = [p for p in running.probes() if "mem" in p.name or "hbm" in p.name]
        mem_probes.append(GroupMemoryProbe(pgids))
        for cell in cells:
            if warmup_rounds:  # first requests pay allocation and compile costs; LMDeploy warms up too
                run_loop(closed_loop(running, cell, warmup_rounds, opts))
            with ProbeSampler(mem_probes, interval=0.1) as probes:
                records, elapsed = run_loop(closed_loop(running, cell, rounds, opts))
            row = cell_row(cell, rounds, records, elapsed)
            peaks = {k: v for k, v in probes.summary().items() if k.endswith("_peak")}
            row["peak_rss_mb"] = peaks.pop("host_rss_mb_peak", math.nan)
            row |= peaks
            rows.append(row)
            if on_row:
                on_row(row)
    finally:
        running.stop()
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


_TABLE = [("conc", "concurrency", "{}"), ("prompt", "prompt_tokens", "{}"), ("compl", "completion_tokens", "{}"),
          ("ok", "requests_ok", "{}"), ("ftl min/mean/max s", None, ""), ("out tok/s", "output_tokens_per_s", "{:.1f}"),
          ("req/s", "requests_per_s", "{:.2f}"), ("tok lat p50/p75/p95/p99 ms", None, ""),
          ("peak MB", "peak_rss_mb", "{:.0f}")]


def format_row(row: dict[str, Any]) -> list[str]:
    out = []
    for title, key, fmt in _TABLE:
        if title.startswith("ftl"):
            out.append("/".join(f"{row[f'first_token_latency_{s}_s']:.3f}" for s in ("min", "mean", "max")))
        elif title.startswith("tok lat"):
            out.append("/".join(f"{1e3 * row[f'token_latency_p{p}_s']:.1f}" for p in PCTS))
        else:
            out.append(fmt.format(row[key]))
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    head = [t for t, _, _ in _TABLE]
    body = [format_row(r) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    for line in [head, *body]:
        print("  ".join(x.rjust(w) for x, w in zip(line, widths)))
    for r in rows:
        if r["error"]:
            print(f"cell c={r['concurrency']} p={r['prompt_tokens']} o={r['completion_tokens']}: {r['error']}")
