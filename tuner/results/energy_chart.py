"""The report's energy section: the study's first objective (time, or capacity) against J per output token.

Drawn for every feasible trial that measured energy (a power probe: NVML's energy counter, npu-smi's
power); the Pareto front of the two (the first objective in its own direction, J/token minimised)
is joined, so the cost in energy of the last per cent of speed shows.
"""
from __future__ import annotations

import optuna

from tuner.trial_record import metric
from tuner.runtime.constraints import is_feasible
from tuner.results.svg import COLORS, Chart

KEY = "energy_j_per_token"


def front(points: list[tuple[float, float, int]], maximize_x: bool) -> list[tuple[float, float, int]]:
    """Points no other beats on both: x in its direction, y (J/token) lower."""
    sign = -1.0 if maximize_x else 1.0
    out, best_y = [], float("inf")
    for x, y, n in sorted(points, key=lambda p: (sign * p[0], p[1])):
        if y < best_y:
            out.append((x, y, n))
            best_y = y
    return out


def energy_svg(study: optuna.Study) -> str:
    name = (study.metric_names or ["objective0"])[0]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    pts = []
    for t in study.trials:
        e = metric(t, KEY)
        x = t.values[0] if t.values else None
        if t.state == optuna.trial.TrialState.COMPLETE and is_feasible(t) and e is not None and x is not None:
            pts.append((float(x), float(e), t.number))
    if not pts:
        return ""
    on = front(pts, maximize)
    ids = {n for _, _, n in on}
    ch = Chart([x for x, _, _ in pts], [y for _, y, _ in pts], xlabel=name, ylabel="energy per output token (J)",
               title=f"Energy: {name} against J/token (Pareto front joined)")
    for x, y, n in pts:
        ch.point(x, y, COLORS["front" if n in ids else "feasible"],
                 f"trial {n}{' (Pareto)' if n in ids else ''}: {name} {x:.4g}, {y:.4g} J/token", r=5 if n in ids else 4)
    if len(on) > 1:
        ch.polyline(sorted((x, y) for x, y, _ in on), COLORS["front"], width=1)
    return f'<div id="energy-front">{ch.render()}</div>'
