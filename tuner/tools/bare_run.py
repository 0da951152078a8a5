"""Bare runs: replay the same trace with requests stopped at each stage, like the seeds' RUN_LEVEL.

Level 1 answers at the HTTP layer, level 2 goes through the scheduler and KV
blocks but not the model, level 3 runs the model. The differences between
rows show where the time goes.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from serving.config.errors import ConfigError
from tuner.space.spec import StudySpace
from tuner.study.run import StudyRun
from tuner.runtime.ownership import TAG_ENV, command_tag
from tuner.runtime.trial import run_trial

LEVELS = [(1, "http", "answered by the HTTP handler"),
          (2, "scheduler", "scheduled with KV blocks, no model"),
          (3, None, "real model forward")]


def bare_run(space: StudySpace, root: Path, params: dict[str, Any] | None = None,
             out_dir: Path | None = None) -> list[dict]:
    if space.backend != "embedded":
        raise ConfigError(f"bare-run needs backend=embedded (it switches the engine's stages), got "
                          f"{space.backend!r}; for llm-serving set RUN_LEVEL in its processes' environment",
                          key="backend")
    plan = StudyRun(space, root, "").plan()
    rows = []
    tag = {TAG_ENV: command_tag(space.study, "bare-run")}  # a SIGKILLed bare-run's engine is ended next time
    base = Path(out_dir or tempfile.mkdtemp(prefix="bare-run-"))
    for level, stub, what in LEVELS:
        outcome = run_trial(space, root, dict(params or {}, **{"engine_config.stub": stub}),
                            base / f"level{level}", plan, env=tag)
        m = outcome.metrics
        rows.append({"level": level, "stage": stub or "model", "what": what,
                     "total_time": m.get("total_time"), "ttft_p50": m.get("ttft_p50"),
                     "tpot_p50": m.get("tpot_p50"), "busy_pct": m.get("utilisation"),
                     "failed": outcome.fail_class})
    print_table(rows, len(plan))
    return rows


def print_table(rows: list[dict], n: int) -> None:
    print(f"bare run, {n} requests; each level stops every request at one stage")
    print(f"{'level':>5}  {'stage':<10} {'Exec Time s':>11} {'TTFT p50 ms':>11} {'TPOT p50 ms':>11} {'busy %':>7}  what")
    for r in rows:
        def f(v, scale=1.0):
            return f"{v * scale:.2f}" if isinstance(v, float) and v == v else "-"
        print(f"{r['level']:>5}  {r['stage']:<10} {f(r['total_time']):>11} {f(r['ttft_p50'], 1e3):>11} "
              f"{f(r['tpot_p50'], 1e3):>11} {f(r['busy_pct']):>7}  {r['what']}"
              + (f"  FAILED {r['failed']}" if r["failed"] else ""))
