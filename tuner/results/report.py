"""`tune report`: one self-contained HTML page (inline SVG, no scripts) and results.csv.

Sections: the trials' outcomes, where the trials' time went (start-up, replay, stop: docs/metrics.md),
optimisation history per objective, the Pareto front (two objectives or more), parameter importances
(Optuna's default PED-ANOVA evaluator, no extra dependency), the capacity search's curves (capacity
studies), time or capacity against energy per token (where a power probe measured it), and per-trial
latency distributions from trials/<study>/<n>/requests.csv.
"""
from __future__ import annotations

import warnings
from html import escape
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from tuner.trial_record import StudyKey, metric, record, study_attr
from tuner.runtime.constraints import is_feasible, outcome
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


def history_svg(study: optuna.Study, i: int, name: str) -> str:
    trials = [t for t in study.trials if t.values]
    ys = [t.values[i] for t in trials if is_feasible(t)] or [0.0]
    ch = Chart([t.number for t in study.trials] or [0], ys, xlabel="trial", ylabel=name,
               title=f"Optimisation history: {name} ({study.directions[i].name.lower()})")
    minimize = study.directions[i] == optuna.study.StudyDirection.MINIMIZE
    best, line = None, []
    for t in trials:
        if not is_feasible(t):
            continue
        v = t.values[i]
        ch.point(t.number, v, COLORS["feasible"], f"trial {t.number}: {name}={v:.4g}")
        best = v if best is None or (v < best if minimize else v > best) else best
        line.append((t.number, best))
    for t in study.trials:  # infeasible and pruned trials at their partial value, if any
        v = metric(t, name)
        if not is_feasible(t) or t.state == optuna.trial.TrialState.PRUNED:
            if isinstance(v, (int, float)) and ch.ylim[0] <= v <= ch.ylim[1]:
                ch.point(t.number, v, COLORS["infeasible"], f"trial {t.number} ({outcome(t)}): {name}={v:.4g}", "x")
    if line:
        line.append((study.trials[-1].number, line[-1][1]))
        ch.polyline(line, COLORS["best"], step=True)
    return ch.render()


def pareto_svg(study: optuna.Study, names: list[str]) -> str:
    feas = [t for t in study.trials if t.values and is_feasible(t)]
    front = {t.number for t in study.best_trials if is_feasible(t)}
    ch = Chart([t.values[0] for t in feas], [t.values[1] for t in feas], xlabel=names[0], ylabel=names[1],
               title=f"Pareto front: {names[0]} vs {names[1]} (feasible trials)")
    for t in feas:
        on = t.number in front
        ch.point(t.values[0], t.values[1], COLORS["front" if on else "feasible"],
                 f"trial {t.number}{' (Pareto)' if on else ''}: {t.values[0]:.4g}, {t.values[1]:.4g}", r=5 if on else 4)
    pts = sorted((t.values[0], t.values[1]) for t in feas if t.number in front)
    if len(pts) > 1:
        ch.polyline(pts, COLORS["front"], width=1)
    return ch.render()


def importance_svg(study: optuna.Study) -> str:
    feas = [t for t in study.trials if t.values and is_feasible(t)]
    if len(feas) < 3 or not feas[0].params:
        return "<p>Parameter importances need at least 3 feasible trials.</p>"
    sub = optuna.create_study(directions=study.directions)  # infeasible placeholders would skew it
    sub.add_trials(feas)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(sub, target=lambda t: t.values[0])
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        return f"<p>Parameter importances unavailable: {escape(str(err))}</p>"
    names = list(imp)
    ch = Chart([0.0, max(imp.values(), default=1.0)], [-0.5, len(names) - 0.5], height=60 + 28 * len(names),
               xlabel="importance (PED-ANOVA)", title=f"Parameter importances for {study.metric_names[0] if study.metric_names else 'objective 0'}", pad=0)
    ch.m = (48, 16, 40, 200)
    for i, n in enumerate(names):
        ch.hbar(i, imp[n], n)
    return ch.render({float(i): n for i, n in enumerate(names)})


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
    parts += ["<h2>Where the time went</h2>", time_spent(df), "<h2>Optimisation history</h2>"]
    parts += [history_svg(study, i, n) for i, n in enumerate(names)]
    if len(names) >= 2:
        parts += ["<h2>Pareto front</h2>", pareto_svg(study, names)]
    curves = capacity_svg(study)
    if curves:
        parts += ["<h2>Capacity under SLOs</h2>", curves]
    joules = energy_svg(study)
    if joules:
        parts += ["<h2>Energy per token</h2>", joules]
    parts += ["<h2>Parameter importances</h2>", importance_svg(study),
              "<h2>Latency distributions</h2>", latency_svg(study, trials_dir),
              "<h2>Trials</h2>", trials_table(df, names)]
    html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(study.study_name)} report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = write_text(trials_dir / "report.html", html, force=True, key="--out")
    return out, csv
