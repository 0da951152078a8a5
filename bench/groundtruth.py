"""Ground-truth tables: every configuration of a grid measured on a real stack, fresh launches, repeats.

  python bench/groundtruth.py embedded    [--repeats 3] [--until 21:40] [--grid KEY=V1,V2 ...]
  python bench/groundtruth.py llm_serving [--repeats 2]   # needs TUNER_LLMS_* (.ci/llm_serving.sh)
  python bench/groundtruth.py vllm        [--repeats 2]   # needs TUNER_VLLM_PYTHON; 2 replays per launch
  python bench/groundtruth.py vllm_qps40  [--repeats 2]   # the same at 40 req/s, where configurations differ
  python bench/groundtruth.py vllm_burst  [--repeats 2]   # the same grid, 96 requests sent at once

Each launch is one call of tuner.runtime.trial.run_trial, the path a study's trial takes (render,
check, launch, replay, score, stop), so a row costs what a trial costs. One CSV row per replay under
bench/data/<table>.csv with the launch's and replay's seconds, the objective, the load average
(the host is shared: a row measured at load 6 is not one measured at load 0.5), the date and commit;
bench/data/<table>.json holds the provenance (stack and version, study, overrides, trace, load, grid).
The bench resumes: rows already there count, and a configuration measured ``--repeats`` times is
skipped. Launches go in passes (every configuration once, then again, ...) in a seeded shuffled
order, so a table cut short by ``--until`` has every configuration at least once where possible,
and repeats are spread over the hours (the host's load drifts). Widen the grid (``--grid``) or
raise ``--repeats`` to extend a table; a table measured under another study, load or stack is refused.
Building a table takes hours of a quiet host and is not part of CI.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT

from tuner.runtime.client_check import CLIENT_OVERLOADED
from tuner.runtime.constraints import is_infra_failure

DATA = ROOT / "bench" / "data"
PROFILE = "ascend910b_llama2_7b"


@dataclass
class Table:
    """Which study, overrides and grid a table measures, and how."""
    name: str
    study: str
    overrides: list[str]
    grid: dict[str, list]
    replays: int = 1                  # replays per launch (vLLM: its launch is the slow part)
    needs: list[str] = field(default_factory=list)   # environment variables the stack needs


UNBOUND = ["++vllm.env.VLLM_CPU_OMP_THREADS_BIND=nobind"]   # vLLM's OpenMP threads left unbound (below)
#: only knobs that reach vLLM (issue 23: a false enable_chunked_prefill never did): 6 x 4 = 24
VLLM_GRID = {"max_num_seqs": [4, 8, 16, 32, 64, 128], "max_num_batched_tokens": [512, 1024, 2048, 4096]}


def tables() -> dict[str, Table]:
    vllm_py = os.environ.get("TUNER_VLLM_PYTHON", "")
    return {
        # 4 x 7 x 2 x 2 = 112 configurations; a launch is 10-40 s here at 100 requests (load 1-3)
        "embedded": Table("embedded_pa_batching", "pa_batching", [], {
            "model_config.prefill_batch_size": [1, 2, 4, 8],
            "model_config.decode_batch_size": [1, 2, 4, 8, 16, 32, 64],
            "pa_config.num_blocks": [128, 1024],
            "pa_config.block_size": [8, 32]}),
        # as bench/overhead.py runs it: RUN_LEVEL 5, the agent waits the 910B profile's device time
        "llm_serving": Table("llm_serving_pa_batching", "pa_batching_llm_serving",
                             [f"llm_serving.emulate_profile={PROFILE}", "llm_serving.run_level=5"], {
            "model_config.decode_batch_size": [1, 2, 4, 8, 16],
            "pa_config.num_blocks": [128, 256, 512],
            "pa_config.block_size": [16, 32, 64]},
            needs=["TUNER_LLMS_ROOT", "TUNER_MINDFORMERS_ROOT", "TUNER_LLMS_PYTHON"]),
        # 2 replays a launch (vLLM's launch is the slow part); its OpenMP threads unbound: bound, its
        # worker's core starved the replay client for seconds (bench/host.py), every replay client_overloaded
        "vllm": Table("vllm_batching", "vllm_batching", [f"vllm.python={vllm_py}", *UNBOUND] if vllm_py else [],
                      dict(VLLM_GRID), replays=2, needs=["TUNER_VLLM_PYTHON"]),
        # the same grid at twice the study's rate (40 req/s x 5 s, about the tiny model's capacity here):
        # at 20 req/s the trace's 5 s of arrivals hide most configurations (repeat-to-repeat tau 0.18);
        # on 2 shared cores its clients fell behind in 15 of 20 replays (bench/data/superseded/README.md)
        "vllm_qps40": Table("vllm_batching_qps40", "vllm_batching",
                            [f"vllm.python={vllm_py}", *UNBOUND, "load.qps=40"] if vllm_py else [],
                            dict(VLLM_GRID), replays=2, needs=["TUNER_VLLM_PYTHON"]),
        # 96 requests due at once (X >= 200 with performance_serving's rounded gaps): every configuration
        # drains the same queue, so the running batch and tokens per step decide the time, not the
        # arrivals; a burst has no schedule to keep, so only the client's read lag is judged (at 40 req/s
        # the send lag failed most replays on 2 cores, bench/data/superseded/README.md)
        "vllm_burst": Table("vllm_batching_burst", "vllm_batching",
                            [f"vllm.python={vllm_py}", *UNBOUND, "load.qps=1000", "load.duration=null",
                             "+load.requests=96", "load.round_gaps=true"] if vllm_py else [],
                            dict(VLLM_GRID), replays=2, needs=["TUNER_VLLM_PYTHON"]),
    }


HOST_TRIES = 3   # launches of one configuration in a pass while the host fails them (e.g. client_overloaded)
COLUMNS = ["config", "launch", "replay", "ok", "fail_class", "total_time", "utilisation", "launch_s",
           "replay_s", "trial_s", "loadavg1", "loadavg5", "date", "commit", "ttft_p99", "detail"]


def key_of(params: dict[str, Any]) -> str:
    """A configuration's identity in the CSV: its parameters as sorted JSON."""
    return json.dumps(params, sort_keys=True)


def grid_configs(grid: dict[str, list]) -> list[dict[str, Any]]:
    return [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def stack_version(space) -> str:
    """What was measured: the vLLM release, the llm-serving checkout's commit, or this project's."""
    opts = space.backend_options()
    if space.backend == "vllm":
        py = opts.get("python") or sys.executable
        out = subprocess.run([py, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True,
                             timeout=300)
        return f"vllm {out.stdout.strip() or '?'}"
    if space.backend == "llm_serving":
        root = opts.get("root") or os.environ.get("TUNER_LLMS_ROOT", "")
        out = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
        return f"llm-serving {out.stdout.strip() or '?'} (RUN_LEVEL 5, emulated {PROFILE})"
    return f"embedded engine of serving-tuner {git_commit()}"


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def launches_made(rows: list[dict[str, str]], counted: bool = False) -> dict[str, int]:
    """Launches per configuration; ``counted``: only those that measured it (a launch that failed for the
    host, e.g. its client fell behind, says nothing about the configuration: kept, and measured again)."""
    made: dict[str, set] = {}
    for r in rows:
        if not (counted and is_infra_failure(r["fail_class"])):
            made.setdefault(r["config"], set()).add(r["launch"])
    return {k: len(v) for k, v in made.items()}


def provenance(table: Table, space, meta_path: Path) -> dict:
    """The table's provenance; an existing table must have been measured under the same conditions."""
    meta = {"table": table.name, "study": table.study, "overrides": table.overrides, "backend": space.backend,
            "trace": space.trace, "load": space.load.model_dump(mode="json"), "base_config": space.base_config,
            "objective": "total_time", "replays_per_launch": table.replays}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        same = {k: old.get(k) for k in meta if k != "overrides"}
        if same != {k: v for k, v in meta.items() if k != "overrides"}:
            raise SystemExit(f"groundtruth: error: {meta_path}: was measured under other conditions "
                             f"({ {k: old.get(k) for k in meta if old.get(k) != meta[k]} }); use another --table")
        meta = old | {"grid": {k: sorted(set(old["grid"].get(k, [])) | set(v), key=lambda x: (type(x).__name__, x))
                               for k, v in table.grid.items()}}
    else:
        meta |= {"grid": table.grid, "stack_version": stack_version(space), "created": now(),
                 "host": os.uname().nodename, "cpus": os.cpu_count()}
    return meta


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def measure_launch(space, params: dict[str, Any], plan, run_dir: Path, replays: int = 1) -> list[dict[str, Any]]:
    """One fresh launch through run_trial (the study's path); its rows, one per replay."""
    from tuner.runtime.context import TrialContext
    from tuner.runtime.trial import run_trial
    t0 = time.monotonic()
    up: list[float] = []
    ctx = TrialContext(space, ROOT, run_dir, plan, on_launch=lambda pgids: up.append(time.monotonic()))
    out = run_trial(ctx, params, replays=replays)
    end = time.monotonic()
    launch_s = (up[0] if up else end) - t0
    more_s = sum(m["replay_s"] for m in out.more_replays)
    first_s = end - t0 - launch_s - more_s       # the first replay, the lone bound request and the stop
    load1, load5, _ = os.getloadavg()
    common = {"launch_s": round(launch_s, 3), "trial_s": round(end - t0, 3), "loadavg1": round(load1, 2),
              "loadavg5": round(load5, 2), "date": now()}
    m = out.metrics
    rows = [common | {"ok": int(out.ok), "fail_class": out.fail_class or "", "total_time": m.get("total_time", ""),
                      "utilisation": m.get("utilisation", ""), "replay_s": round(first_s, 3),
                      "ttft_p99": m.get("ttft_p99", ""), "detail": out.fail_detail[:300]}]
    for extra in out.more_replays:   # judged as the first: requests answered, stack alive, client kept up
        alive = extra["alive"] == 1.0
        served = extra.get("requests_failed", 1) / max(extra.get("requests", 1), 1) <= space.max_failed_fraction
        # as run_trial judges the first: a client that fell behind while the stack lived measured itself
        fail = CLIENT_OVERLOADED if extra["client_behind"] and alive else "" if served and alive else "replay_failed"
        why = extra["client_behind"] if fail == CLIENT_OVERLOADED else extra["fail_detail"] if fail else ""
        rows.append(common | {"ok": int(not fail), "fail_class": fail,
                              "total_time": extra.get("total_time", ""), "utilisation": "",
                              "replay_s": round(extra["replay_s"], 3), "ttft_p99": extra.get("ttft_p99", ""),
                              "detail": why[:300]})
    return rows


def build(table: Table, repeats: int, until: float | None, limit: int | None, out_dir: Path, seed: int,
          first: dict[str, list] | None = None, host_tries: int = HOST_TRIES) -> int:
    """Measure the table's missing launches; ``first``: a sub-grid measured through all its passes before
    the rest (a table cut short then holds a complete smaller grid a tabular replay can use)."""
    from tuner.space.compose import load_space
    from tuner.study.run import StudyRun
    missing = [v for v in table.needs if not os.environ.get(v)]
    if missing:
        print(f"groundtruth: error: the {table.study} table needs {', '.join(missing)} set", file=sys.stderr)
        return 2
    space = load_space(table.study, ROOT, table.overrides)
    specs = space.param_specs()
    for k, vals in table.grid.items():
        if k not in specs:
            print(f"groundtruth: error: --grid: {k}: must be a parameter of {table.study}, got {k!r}", file=sys.stderr)
            return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, meta_path = out_dir / f"{table.name}.csv", out_dir / f"{table.name}.json"
    meta = provenance(table, space, meta_path)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    configs = grid_configs(meta["grid"])
    rows = read_rows(csv_path)
    done, made = launches_made(rows, counted=True), launches_made(rows)
    plan = StudyRun(space, ROOT, "").plan()
    commit = git_commit()
    order = list(range(len(configs)))
    random.Random(seed).shuffle(order)
    inside = [i for i in order if first and all(configs[i][k] in v for k, v in first.items())]
    phases = [inside, order] if inside else [order]
    new = 0
    with tempfile.TemporaryDirectory(prefix="groundtruth_") as tmp, csv_path.open("a", newline="") as fh:
        # a table begun before a column was added keeps its header (its new rows leave that column out)
        header = list(rows[0]) if rows else COLUMNS + list(meta["grid"])
        writer = csv.DictWriter(fh, header, extrasaction="ignore")
        if not rows:
            writer.writeheader()
        for rep, phase in ((r, ph) for ph in phases for r in range(repeats)):
            for i in phase:  # passes: everything once before anything twice
                params = configs[i]
                key = key_of(params)
                # a launch the host failed goes again, up to host_tries a pass, counted from the rows (resumable)
                while done.get(key, 0) <= rep and made.get(key, 0) - done.get(key, 0) < (rep + 1) * host_tries:
                    if (until is not None and time.time() >= until) or (limit is not None and new >= limit):
                        print(f"stopped: {new} launches this run; rerun to resume", flush=True)
                        return 0
                    launch_rows = measure_launch(space, params, plan, Path(tmp) / str(new), table.replays)
                    for r, row in enumerate(launch_rows):
                        writer.writerow(row | {"config": key, "launch": made.get(key, 0), "replay": r,
                                               "commit": commit} | params)
                    fh.flush()
                    made[key] = made.get(key, 0) + 1
                    # a launch counts when one of its replays measured the configuration
                    done[key] = done.get(key, 0) + any(not is_infra_failure(r["fail_class"]) for r in launch_rows)
                    new += 1
                    got = ", ".join(f"{r['total_time'] or '-'} s ({r['fail_class'] or 'ok'})" for r in launch_rows)
                    print(f"{now()} pass {rep + 1}/{repeats} #{new} {params} -> {got}, trial {row['trial_s']} s, "
                          f"load {row['loadavg1']}", flush=True)
    print(f"done: {len(configs)} configurations x {repeats} launches in {csv_path}")
    return 0


def parse_until(text: str | None) -> float | None:
    """HH:MM (UTC, today) -> epoch seconds; no new launch starts after it."""
    if not text:
        return None
    h, m = map(int, text.split(":"))
    day = dt.datetime.now(dt.timezone.utc)
    return day.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


def parse_grid(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        k, _, vals = item.partition("=")
        grid[k] = [json.loads(v) if v not in ("", None) else v for v in vals.split(",")]
    return grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stack", choices=sorted(tables()))
    ap.add_argument("--repeats", type=int, help="launches per configuration (default: 3 embedded, else 2)")
    ap.add_argument("--until", help="HH:MM UTC: start no launch after it (the table resumes later)")
    ap.add_argument("--limit", type=int, help="at most this many launches in this run")
    ap.add_argument("--grid", nargs="*", default=[], help="KEY=V1,V2: replace a parameter's levels "
                    "(the table's grid becomes the union with what it has)")
    ap.add_argument("--out", type=Path, default=DATA, help="folder of the tables (default bench/data)")
    ap.add_argument("--host-tries", type=int, default=HOST_TRIES, help="launches of a configuration in a pass while "
                    "the host fails them (client_overloaded, port taken, ...); raise it to try those again")
    ap.add_argument("--seed", type=int, default=0, help="order of the launches within a pass")
    ap.add_argument("--first", nargs="*", default=[], help="KEY=V1,V2: the sub-grid of these levels first, "
                    "all its passes, then the rest")
    args = ap.parse_args(argv)
    table = tables()[args.stack]
    table.grid |= parse_grid(args.grid)
    repeats = args.repeats or (3 if args.stack == "embedded" else 2)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return build(table, repeats, parse_until(args.until), args.limit, args.out, args.seed, parse_grid(args.first),
                 args.host_tries)


if __name__ == "__main__":
    raise SystemExit(main())
