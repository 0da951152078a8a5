"""How well a ground-truth table decides its own optimum (bench/tabular.py prints it).

"Within 2 % of the table's optimum" is only a goal a method can be held to where the table knows
its optimum to 2 %. A configuration's value in the table is a median over a few launches, and the
replays of one launch share that launch's state (where its threads landed, what else the host ran
then), so they are not independent draws. The noise is therefore taken at the launch: each launch's
mean over its finished replays, in logs; the within-configuration variance of those, pooled over the
table, is the launch noise (it holds the replays' own noise, averaged). With it, each
configuration's true (log) value is drawn from its posterior, many times: its launches' mean with
that standard error, shrunk toward the table's mean as far as the noise explains the spread
(empirical Bayes: a flat table does not crown the configuration that measured lowest by luck):

- ``p_within``: the share of draws in which the table's optimum (best median) is within 2 % of the
  best drawn configuration, i.e. how sure the table is that reaching its optimum means being tuned;
- ``p_best``: per configuration, the share of draws in which it is the best;
- ``launches_needed``: launches per configuration for a 2 % difference between two configurations
  to stand at two standard errors (the table's size for the 2 % goal to be judged).
Normal approximations, stated as such: it reads the table, it does not replace it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TOL = 0.02


@dataclass
class Determination:
    launch_sd: float          # pooled within-configuration SD of log launch means
    replay_sd: float          # pooled within-launch SD of log replays (NaN when no launch has two)
    launches: float           # median launches per configuration
    p_within: float           # P(the table's optimum is within TOL of the best)
    p_best: dict[int, float]  # configuration index -> P(it is the best), the likeliest first
    launches_needed: int


def _pooled_sd(groups: list[list[float]]) -> float:
    ss = sum(float(np.sum((np.asarray(g) - np.mean(g)) ** 2)) for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(ss / dof) if dof else math.nan


def launch_means(runs: list[tuple[float, float]], launches: list[int]) -> tuple[list[float], list[list[float]]]:
    """Per launch of one configuration: the log of its finished replays' mean, and its replays' logs."""
    by: dict[int, list[float]] = {}
    for (value, _), launch in zip(runs, launches):
        if not math.isinf(value):
            by.setdefault(launch, []).append(value)
    return [math.log(np.mean(v)) for v in by.values()], [list(np.log(v)) for v in by.values()]


def determination(gt, optimum: int, draws: int = 20000, seed: int = 0) -> Determination | None:
    """``gt``: a GroundTruth (runs and their launch ids); ``optimum``: the table's optimum's index.
    None where no configuration has two launches (no launch noise to read)."""
    per_config = [launch_means(r, gt.launch_ids(i)) for i, r in enumerate(gt.runs)]
    means = [m for m, _ in per_config]
    launch_sd = _pooled_sd(means)
    if math.isnan(launch_sd):
        return None
    replay_sd = _pooled_sd([g for _, groups in per_config for g in groups])
    live = [i for i, m in enumerate(means) if m]
    x = np.array([np.mean(means[i]) for i in live])
    se2 = np.array([launch_sd ** 2 / len(means[i]) for i in live])
    # empirical Bayes: the configurations' true values spread by tau^2 around their mean (what the
    # observed spread holds beyond the noise); each is shrunk toward it by its noise, so the one that
    # measured lowest by luck in a flat table is not taken for the best (the winner's curse)
    tau2 = max(float(np.var(x) - np.mean(se2)), 0.0)
    keep = tau2 / (tau2 + se2)
    mu, sd = x.mean() + keep * (x - x.mean()), np.sqrt(keep * se2)
    drawn = np.random.default_rng(seed).normal(mu, sd, size=(draws, len(live)))
    best = drawn.min(axis=1)
    p_within = float(np.mean(drawn[:, live.index(optimum)] <= best + math.log1p(TOL))) if optimum in live else 0.0
    wins = np.bincount(drawn.argmin(axis=1), minlength=len(live)) / draws
    p_best = {live[k]: float(wins[k]) for k in np.argsort(-wins) if wins[k] > 0}
    # the SE of a difference of two configurations' means is launch_sd * sqrt(2 / n): 2 of them <= log 1.02
    needed = math.ceil(2 * (2 * launch_sd / math.log1p(TOL)) ** 2)
    return Determination(launch_sd, replay_sd, float(np.median([len(m) for m in means if m])), p_within, p_best,
                         needed)


def report_determination(gt, d: Determination | None, top: int = 5) -> None:
    i, opt = gt.optimum
    if d is None:
        print("the table's optimum: no configuration has two launches, so its launch noise is unknown")
        return
    within = "one replay a launch" if math.isnan(d.replay_sd) else f"replays within a launch {d.replay_sd:.1%}"
    likely = ", ".join(f"{gt.configs[k]} {p:.0%}" for k, p in list(d.p_best.items())[:top])
    print(f"how well the table decides its optimum: launch-to-launch noise {d.launch_sd:.1%} (log SD; {within}), "
          f"{d.launches:g} launches per configuration; the table's optimum "
          f"({opt:.3f} s) is within 2 % of the true best in {d.p_within:.0%} of draws; best in draws: {likely}; "
          f"launches per configuration for 2 % to stand at two standard errors: {d.launches_needed}")
