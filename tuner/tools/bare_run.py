"""Bare runs: replay the same trace with requests stopped at each stage, like the seeds' RUN_LEVEL.

Each stack declares its stages (serving.stacks.Stack.stages). On the embedded engine, level 1 answers at the HTTP layer, level 2 goes through
the scheduler and KV blocks but not the model, level 3 runs the model. On MindSpore
llm-serving (``RUN_LEVEL`` in its processes; levels 1-4 need the project's patch,
serving/stacks/patches/llm-serving-run-levels.patch) the real code stops at
server_app_post, Worker.predict, DisModel.call, WorkAgent.predict and the model call;
the real forward is a row only where there is an accelerator. The differences
between rows show where the time goes.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from serving.config.errors import ConfigError
from serving.stacks import get_stack
from tuner.space.spec import StudySpace
from tuner.study.run import StudyRun
from tuner.runtime.context import TrialContext
from tuner.runtime.ownership import command_tag
from tuner.runtime.trial import run_trial

def _row(level: int, stage: str, what: str, outcome) -> dict:
    m = outcome.metrics
    return {"level": level, "stage": stage, "what": what,
            "total_time": m.get("total_time"), "ttft_p50": m.get("ttft_p50"),
            "tpot_p50": m.get("tpot_p50"), "busy_pct": m.get("utilisation"),
            "failed": outcome.fail_class, "detail": outcome.fail_detail}


def bare_run(space: StudySpace, root: Path, params: dict[str, Any] | None = None,
             out_dir: Path | None = None) -> list[dict]:
    """One trial per stage the stack declares (Stack.stages), each a fresh launch on the same plan."""
    stages = get_stack(space.backend).stages(space.backend_options())
    if not stages:
        raise ConfigError(f"bare-run needs a stack that can stop requests at stages; backend {space.backend!r} "
                          f"has none", key="backend")
    plan = StudyRun(space, root, "").plan()
    rows = []
    tag = command_tag(space.study, "bare-run")  # a SIGKILLed bare-run's engine is ended next time
    # kept beside the study's other tool output, never in an unannounced temporary folder
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(out_dir or Path(root) / "trials" / space.study / "bare-run" / stamp)
    for stage in stages:
        sp = space if stage.options is None else space.model_copy(
            update={"stack_options": {**space.stack_options, space.backend: stage.options}})
        outcome = run_trial(TrialContext(sp, root, base / f"level{stage.level}", plan, tag=tag),
                            {**(params or {}), **stage.params})
        rows.append(_row(stage.level, stage.name, stage.what, outcome))
    print_table(rows, len(plan))
    print(f"each level's run folder is under {base}")
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
