"""The report's capacity curves: for each trial of a capacity study, every rate its search tried.

A curve's y is the rate's SLO load, the largest latency percentile over its bound (1.0 is the
SLO; above it the rate broke it); a dot is a rate that met the SLOs, a cross one that did not.
"""
from __future__ import annotations

from html import escape

import optuna

from tuner.trial_record import StudyKey, metric, study_attr
from tuner.results.svg import COLORS, Chart

MAX_CURVES = 10                     # the trials with the highest capacity
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#d62728")


def slo_load(probe: dict, slo: dict[str, float]) -> float | None:
    ratios = [probe[k] / b for k, b in slo.items() if k != "failed" and b > 0 and probe.get(k) is not None]
    return max(ratios) if ratios else None


def capacity_svg(study: optuna.Study) -> str:
    slo = (study_attr(study, StudyKey.SPACE) or {}).get("slo") or {}
    trials = [t for t in study.trials if isinstance(metric(t, "capacity_probes"), list)]
    if not trials:
        return ""
    trials = sorted(trials, key=lambda t: -(metric(t, "capacity_rps") or 0.0))[:MAX_CURVES]
    curves = []
    for t in trials:
        pts = [(p["rate"], slo_load(p, slo), p) for p in metric(t, "capacity_probes") if p.get("rate")]
        curves.append((t, sorted((x, y, p) for x, y, p in pts if y is not None)))
    xs = [x for _, c in curves for x, _, _ in c]
    ys = [y for _, c in curves for _, y, _ in c] + [1.0]
    ch = Chart(xs or [0.0], ys, xlabel="arrival rate (req/s)", ylabel="SLO load (worst percentile / bound)",
               title="Capacity search: each rate tried per trial (dot met the SLOs, cross broke them)")
    ch.polyline([(min(xs or [0.0]), 1.0), (max(xs or [1.0]), 1.0)], COLORS["muted"], width=1)
    legend = []
    for i, (t, c) in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        ch.polyline([(x, y) for x, y, _ in c], color, width=1)
        for x, y, p in c:
            ch.point(x, y, color, f"trial {t.number}: {x:.3g} req/s {p['verdict']} {p.get('why') or ''}",
                     marker="o" if p["verdict"] == "pass" else "x")
        cap = metric(t, "capacity_rps")
        legend.append(f'<span style="color:{color}">trial {t.number}: {cap:.3g} req/s '
                      f'[{metric(t, "capacity_low") or 0:.3g}, {metric(t, "capacity_high") or float("inf"):.3g}]'
                      f'</span>' if cap is not None else f'<span style="color:{color}">trial {t.number}</span>')
    bounds = ", ".join(f"{k} &le; {v:g}" for k, v in slo.items())
    return (f'<div id="capacity-curves"><p>SLO: {escape(bounds)}. Capacity [bracket]: {"; ".join(legend)}</p>'
            f"{ch.render()}</div>")
