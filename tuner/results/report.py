"""`tune report`: one self-contained HTML page (inline SVG, no scripts) and results.csv.

Sections: the trials' outcomes, where the trials' time went (start-up, replay, stop: docs/metrics.md),
the capacity search's curves (capacity studies), time or capacity against energy per token (where a
power probe measured it), per-trial latency distributions from trials/<study>/<n>/requests.csv, and
every trial. The charts optuna-dashboard draws from the study itself (history, Pareto front, parameter
importances) are left to it (`tune dashboard`): the report draws only what the study does not hold.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from tuner.trial_record import StudyKey, metric, record, study_attr
from tuner.runtime.constraints import outcome
from tuner.study.finalists import describe
from tuner.results.capacity_chart import capacity_svg
from tuner.results.energy_chart import energy_svg
from tuner.results.svg import COLORS, Chart
from tuner.runtime.writes import make_folder, write_text

MAX_ROWS = 60  # latency boxes drawn (the best first); results.csv has every trial
PHASES = ("startup_s", "replay_s", "stop_s")   # tuner.runtime.phases: where a trial's time went


def results_frame(study: optuna.Study) -> pd.DataFrame:
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    rows = []
    for t in study.trials:
        row = {"number": t.number, "state": t.state.name, "outcome": outcome(t),
               "fail_class": record(t).fail_class, "infeasible_because": record(t).infeasible_because}
        for i, n in enumerate(names):
            row[n] = t.values[i] if t.values and outcome(t) == "feasible" else metric(t, n)
        config = record(t).config  # the values measured (tuner.study.run.trial_config); params are positions
        row |= {f"param.{k}": v for k, v in (config if isinstance(config, dict) else {}).items()}
        rec = record(t)
        row |= {k: v for k, v in (rec.metrics | rec.model_dump(exclude={"log_tail", "fail_detail"})).items()
                if isinstance(v, (int, float, str)) and k not in row}
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    return pd.DataFrame(rows)


def latency_svg(study: optuna.Study, trials_dir: Path) -> str:
    boxes = []
    for t in study.trials:
        run_dir = record(t).run_dir  # stored by the trial: its study's folder, not one rebuilt from a name
        path = Path(run_dir) / "requests.csv" if run_dir else None
        if path is None or not path.exists():
            continue
        df = pd.read_csv(path)
        ok = df[df["error"].isna() & df["done"].notna()] if "error" in df else df
        e2e = (ok["done"] - ok["sent"]).dropna().to_numpy(dtype=float)
        if e2e.size:
            q = [float(v) for v in np.percentile(e2e, [5, 25, 50, 75, 95])]
            boxes.append((t, q, len(df) - len(ok)))
    if not boxes:
        return "<p>No per-request records found.</p>"
    boxes = sorted(boxes, key=lambda b: b[1][2])[:MAX_ROWS]
    ch = Chart([v for _, q, _ in boxes for v in q], [-0.5, len(boxes) - 0.5], height=70 + 22 * len(boxes),
               xlabel="end-to-end latency (s): whiskers p5-p95, box p25-p75, bar median",
               title="Per-trial latency distributions (fastest median first)", pad=0.02)
    ch.m = (48, 16, 40, 110)
    for i, (t, q, failed) in enumerate(boxes):
        color = COLORS["feasible"] if outcome(t) == "feasible" else COLORS["infeasible"]
        ch.hbox(i, q, f"trial {t.number} ({outcome(t)}): p50={q[2]:.3f}s p95={q[4]:.3f}s, {failed} failed", color)
    return ch.render({float(i): f"trial {t.number}" for i, (t, _, _) in enumerate(boxes)})


def time_spent(df: pd.DataFrame) -> str:
    """The study's time by phase, summed over the trials that recorded one (every trial's is in the table)."""
    cols = [c for c in PHASES if c in df.columns]
    timed = df[cols].dropna(how="all") if cols else df.iloc[0:0]
    if timed.empty:
        return "<p>No trial recorded its phase times.</p>"
    sums = {c: float(timed[c].fillna(0.0).sum()) for c in cols}
    total = sum(sums.values()) or float("nan")
    parts = ", ".join(f"{c[:-2]} {v:.1f} s ({100 * v / total:.0f} %)" for c, v in sums.items())
    return (f"<p>{len(timed)} trials spent {total:.1f} s with a stack: {escape(parts)}. Start-up is launch to "
            "ready, replay all done on the running stack, stop its ending; per trial in the table below.</p>")


def trials_table(df: pd.DataFrame, names: list[str]) -> str:
    cols = ["number", "outcome", *names, *PHASES, *[c for c in df.columns if c.startswith("param.")], "fail_class",
            "infeasible_because"]
    cols = [c for c in cols if c in df.columns]
    table = df[cols].to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="trials")
    return f'<div style="overflow-x:auto">{table}</div>'


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table.trials{border-collapse:collapse;font-size:12px}"
       "table.trials td,table.trials th{padding:2px 6px;border-bottom:1px solid #ddd}pre{background:#f6f6f6;padding:8px}")


def write_report(study: optuna.Study, trials_dir: Path) -> tuple[Path, Path]:
    """Write trials_dir/report.html and trials_dir/results.csv (through tuner.runtime.writes: a device,
    a symlink or a failed write is one line); their paths."""
    make_folder(trials_dir)
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    df = results_frame(study)
    csv = write_text(trials_dir / "results.csv", df.to_csv(index=False), force=True, key="--out")
    counts = df["outcome"].value_counts().to_dict() if len(df) else {}
    parts = [f"<h1>Study {escape(study.study_name)}</h1>",
             f"<p>{len(df)} trials: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ". Objectives: "
             + ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions)) + "</p>"]
    verdict = study_attr(study, StudyKey.FINALISTS)
    if verdict:
        parts.append(f"<h2>Finalists</h2><pre>{escape(describe(verdict))}</pre>")
    parts += ["<h2>Where the time went</h2>", time_spent(df),
              "<p>History, Pareto front and parameter importances: <code>tune dashboard --study "
              f"{escape(study.study_name)}</code> (optuna-dashboard).</p>"]
    curves = capacity_svg(study)
    if curves:
        parts += ["<h2>Capacity under SLOs</h2>", curves]
    joules = energy_svg(study)
    if joules:
        parts += ["<h2>Energy per token</h2>", joules]
    parts += ["<h2>Latency distributions</h2>", latency_svg(study, trials_dir),
              "<h2>Trials</h2>", trials_table(df, names)]
    html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(study.study_name)} report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = write_text(trials_dir / "report.html", html, force=True, key="--out")
    return out, csv
