"""Bare runs: replay the same trace with requests stopped at each stage, like the seeds' RUN_LEVEL.

On the embedded engine, level 1 answers at the HTTP layer, level 2 goes through
the scheduler and KV blocks but not the model, level 3 runs the model. On MindSpore
llm-serving (``RUN_LEVEL`` in its processes; levels 1-4 need the project's patch,
serving/stacks/patches/llm-serving-run-levels.patch) the real code stops at
server_app_post, Worker.predict, DisModel.call, WorkAgent.predict and the model call;
the real forward is a row only where there is an accelerator. The differences
between rows show where the time goes.
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

LLM_SERVING_LEVELS = [
    (1, "http", "server_app_post answers (FAKE_SERVER_APP_POST)"),
    (2, "worker", "master + scheduler, Worker.predict returns (FAKE_WORKER)"),
    (3, "dispatcher", "+ PA block tables, DisModel.call returns (FAKE_DISPATCHER)"),
    (4, "agent", "+ TCP and shared memory, WorkAgent.predict returns (FAKE_AGENT)"),
    (5, "model_call", "+ agent pre/post-processing and sampling, forward stubbed (FAKE_AGENT_CALL_MODEL)"),
]


def _row(level: int, stage: str, what: str, outcome) -> dict:
    m = outcome.metrics
    return {"level": level, "stage": stage, "what": what,
            "total_time": m.get("total_time"), "ttft_p50": m.get("ttft_p50"),
            "tpot_p50": m.get("tpot_p50"), "busy_pct": m.get("utilisation"),
            "failed": outcome.fail_class, "detail": outcome.fail_detail}


def bare_run(space: StudySpace, root: Path, params: dict[str, Any] | None = None,
             out_dir: Path | None = None) -> list[dict]:
    if space.backend not in ("embedded", "llm_serving"):
        raise ConfigError(f"bare-run needs backend=embedded or backend=llm_serving (it stops requests at each "
                          f"stage), got {space.backend!r}", key="backend")
    plan = StudyRun(space, root, "").plan()
    rows = []
    tag = {TAG_ENV: command_tag(space.study, "bare-run")}  # a SIGKILLed bare-run's engine is ended next time
    base = Path(out_dir or tempfile.mkdtemp(prefix="bare-run-"))
    if space.backend == "embedded":
        for level, stub, what in LEVELS:
            outcome = run_trial(space, root, dict(params or {}, **{"engine_config.stub": stub}),
                                base / f"level{level}", plan, env=tag)
            rows.append(_row(level, stub or "model", what, outcome))
    else:
        opts = space.backend_options()
        levels = list(LLM_SERVING_LEVELS)
        if opts.get("emulate_profile"):
            levels[-1] = (5, "model_call", f"+ agent work, forward stubbed, {opts['emulate_profile']} device time")
        if opts.get("accelerator", "npu") != "none":
            levels.append((100, "model", "real model forward"))
        for level, stage, what in levels:
            lo = dict(opts, run_level=None if level == 100 else level)
            if level != 5:
                lo.pop("emulate_profile", None)
            sp = space.model_copy(update={"stack_options": {**space.stack_options, "llm_serving": lo}})
            outcome = run_trial(sp, root, dict(params or {}), base / f"level{level}", plan, env=tag)
            rows.append(_row(level, stage, what, outcome))
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
              + (f"  FAILED {r['failed']}: {r.get('detail', '')[:120]}" if r["failed"] else ""))
