"""The simulator against a ground-truth table: its value per configuration, its error, rank agreement.

The simulator is the stack's surrogate, as a study's pre-screen and warm start run it
(tuner.screening.prescreen: same render, checks and scoring) with the profile a user of that stack
has: `tune calibrate` run on the host that measured the table, kept beside it as
<table>.profile.yaml (the embedded engine's shipped profile where there is none); the 910B
LLaMA-2-7B profile for llm-serving (the same one whose device time the emulated stack waits); for
vLLM its own scheduler with the step time `tune calibrate` fitted (no profile: no simulator).
Values are cached beside the table (<table>.sim.json, keyed by configuration, with the overrides,
the calibrated profile's digest and commit they came from; other overrides or a refitted profile
start the cache afresh).
Fidelity: mean and max relative error over configurations both ran, Kendall's tau (scipy), whether
the real optimum is among the simulator's five best, and the error per regime (a parameter's level):
the median ratio sim / real there (its bias) and the spread of log ratios around it.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import statistics
from pathlib import Path

from _common import table

from tabular import GroundTruth


def sim_overrides(backend: str, table: str, data: Path) -> list[str] | None:
    """The overrides that put a table's study on its simulator (None: the stack has none here)."""
    calibrated = data / f"{table}.profile.yaml"
    if backend == "embedded":
        return ["backend=sim"] + ([f"++sim.profile={calibrated}"] if calibrated.exists() else [])
    if backend == "llm_serving":   # the profile the stub emulates, its host terms fitted by `tune calibrate` if run
        return ["backend=sim", f"+sim.profile={calibrated if calibrated.exists() else 'ascend910b_llama2_7b'}"]
    if backend == "vllm" and calibrated.exists():   # the stack's surrogate, vllm_sim
        return [f"vllm.surrogate_profile={calibrated}"]
    return None


def sim_values(gt: GroundTruth, root: Path, data: Path | None = None, compute: bool = True,
               metric: str = "total_time") -> list[float] | None:
    """The simulator's ``metric`` per configuration of ``gt``: its first objective (total_time), or
    ttft_p99 (NaN: the simulated trial failed); ``compute=False``: only what the cache holds (NaN for the
    rest), nothing simulated or written."""
    data = data or root / "bench" / "data"
    overrides = sim_overrides(gt.meta["backend"], gt.meta["table"], data)
    if overrides is None:
        return None
    from groundtruth import git_commit, key_of
    from tabular_methods import grid_space
    from tuner.screening.prescreen import first_objective, simulate_params
    from tuner.study.run import StudyRun
    cache_path = data / f"{gt.meta['table']}.sim.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    calibrated = data / f"{gt.meta['table']}.profile.yaml"   # refitted in place: its content keys the cache too
    profile = hashlib.sha1(calibrated.read_bytes()).hexdigest()[:12] if calibrated.exists() else None
    # the profile by its name, not its path: the same table read from another folder is the same simulator
    key = [o.replace(str(calibrated), calibrated.name) for o in overrides]
    if cache.get("overrides") != key or cache.get("profile") != profile:
        cache = {"overrides": key, "profile": profile, "commit": git_commit(), "values": {}}
    # the objective under "values" (caches written before p99 TTFT was kept hold only it)
    got = cache.setdefault("values" if metric == "total_time" else metric, {})
    missing = [c for c in gt.configs if key_of(c) not in got]
    if missing and not compute:
        return [math.nan if got.get(key_of(c)) is None else got[key_of(c)] for c in gt.configs]
    if missing:
        space = grid_space(gt, extra=overrides)
        plan = StudyRun(space, root, "").plan()
        for c in missing:
            out = simulate_params(space, root, c, plan)
            v, ttft = first_objective(space, out), out.metrics.get("ttft_p99", math.nan) if out.ok else math.nan
            for name, x in (("values", v), ("ttft_p99", ttft)):
                cache.setdefault(name, {})[key_of(c)] = None if math.isnan(x) else x
        cache_path.write_text(json.dumps(cache, indent=0) + "\n")
    return [math.nan if got[key_of(c)] is None else got[key_of(c)] for c in gt.configs]


def real_ttft(path: Path, gt: GroundTruth) -> list[float] | None:
    """Per configuration of ``gt``: the median p99 TTFT of its measured replays (NaN where none), from the
    table's ttft_p99 column; None for a table written before it was kept."""
    from groundtruth import key_of
    from tuner.runtime.constraints import is_infra_failure
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "ttft_p99" not in rows[0]:
        return None
    seen: dict[str, list[float]] = {}
    for r in rows:
        if r["ok"] == "1" and r["ttft_p99"] not in ("", "nan") and not is_infra_failure(r["fail_class"]):
            seen.setdefault(r["config"], []).append(float(r["ttft_p99"]))
    return [statistics.median(seen[key_of(c)]) if key_of(c) in seen else math.nan for c in gt.configs]


def ttft_fidelity(real: list[float], sims: list[float]) -> dict:
    """The simulator's p99 TTFT against the measured one: mean and max relative error, Kendall's tau."""
    both = [i for i, (s, t) in enumerate(zip(sims, real)) if not math.isnan(s) and not math.isnan(t)]
    bias = statistics.median(sims[i] / real[i] for i in both) if both else math.nan
    return agreement(sims, real, both) | {"bias": bias}


def agreement(sims: list[float], truth: list[float], both: list[int]) -> dict:
    """Over the configurations ``both`` name: how many, mean and max relative error, Kendall's tau."""
    from scipy.stats import kendalltau
    err = [abs(sims[i] - truth[i]) / truth[i] for i in both]
    tau = kendalltau([sims[i] for i in both], [truth[i] for i in both]).statistic if len(both) > 1 else math.nan
    return {"n": len(both), "mean_err": statistics.fmean(err) if err else math.nan,
            "max_err": max(err, default=math.nan), "tau": tau}


def fidelity(gt: GroundTruth, sims: list[float], regime: str | None = None) -> dict:
    truth = gt.medians
    both = [i for i, (s, t) in enumerate(zip(sims, truth)) if not math.isnan(s) and not math.isinf(t)]
    opt, _ = gt.optimum
    ranked = [s for s in sims if not math.isnan(s)]
    # the optimum's rank among the simulator's values; where it ties others (a knob the simulator does not
    # model, e.g. num_blocks with no KV pressure) the mid-rank of the tie decides "in the top 5"
    better = sum(s < sims[opt] for s in ranked) if not math.isnan(sims[opt]) else None
    tied = sum(s == sims[opt] for s in ranked) if better is not None else 0
    mid = better + (tied + 1) / 2 if better is not None else None
    regime = regime or default_regime(gt)
    return {**agreement(sims, truth, both), "opt_in_top5": mid is not None and mid <= 5, "opt_sim_rank": mid,
            "opt_sim_ranks": (better + 1, better + tied) if better is not None else None,
            "regime": regime, "regimes": regimes(gt, sims, regime),
            "infeasible_disagree": sum(math.isnan(s) != math.isinf(t) for s, t in zip(sims, truth)),
            **dict(zip(("self_tau", "self_n"), repeat_tau(gt)))}


def repeat_tau(gt: GroundTruth, least: int = 5) -> tuple[float, int]:
    """The table against itself: Kendall tau between one measured repeat and another over the
    configurations both measured (the mean over pairs of repeats, weighted by configurations), and
    how many configurations; NaN where fewer than ``least`` have two. No model ranks the configurations
    more truly than their measurement repeats itself: the ceiling the simulator's tau is read against."""
    from scipy.stats import kendalltau
    most = max((len(r) for r in gt.runs), default=0)
    taus = []
    for i, j in itertools.combinations(range(most), 2):
        both = [(r[i][0], r[j][0]) for r in gt.runs
                if len(r) > j and not math.isinf(r[i][0]) and not math.isinf(r[j][0])]
        if len(both) >= least:
            taus.append((kendalltau(*zip(*both)).statistic, len(both)))
    n = sum(k for _, k in taus)
    return (sum(t * k for t, k in taus) / n if n else math.nan), max((k for _, k in taus), default=0)


def default_regime(gt: GroundTruth) -> str:
    """The decode batch where a table has one (it moves the whole step cost), else its first parameter."""
    return next((k for k in gt.keys if k.endswith("decode_batch_size")), gt.keys[0])


def regimes(gt: GroundTruth, sims: list[float], key: str) -> dict:
    """Per level of ``key``: median sim / real (the regime's bias) and the std of log ratios about it."""
    truth = gt.medians
    out = {}
    for level in sorted(set(c[key] for c in gt.configs)):
        logs = [math.log(sims[i] / truth[i]) for i, c in enumerate(gt.configs)
                if c[key] == level and not math.isnan(sims[i]) and not math.isinf(truth[i])]
        if logs:
            mid = statistics.median(logs)
            out[level] = {"bias": math.exp(mid), "spread": statistics.pstdev([x - mid for x in logs]), "n": len(logs)}
    return out


def rank_text(f: dict) -> str:
    lo, hi = f["opt_sim_ranks"] or (None, None)
    return "none (it fails there)" if lo is None else str(lo) if lo == hi else f"{lo}-{hi}, {hi - lo + 1} tied, mid-rank {f['opt_sim_rank']:g}"


def report_fidelity(gt: GroundTruth, f: dict) -> None:
    print(f"simulator vs {gt.name}: {f['n']} configurations both ran; error mean {f['mean_err']:.1%}, max "
          f"{f['max_err']:.1%}; Kendall tau {f['tau']:.3f}; real optimum in the simulator's top 5: "
          f"{'yes' if f['opt_in_top5'] else 'no'} (its rank there: {rank_text(f)}); feasibility disagrees "
          f"on {f['infeasible_disagree']}")
    print(f"the table against itself (one repeat vs another, {f['self_n']} configurations): Kendall tau "
          f"{f['self_tau']:.3f}, the ceiling a simulator's tau is read against")
    table([f["regime"], "sim/real (median)", "spread (log)", "configs"],
          [[lv, r["bias"], r["spread"], r["n"]] for lv, r in f["regimes"].items()])


def report_ttft(t: dict) -> None:
    print(f"p99 TTFT, simulator vs measured (median of replays), {t['n']} configurations: error mean "
          f"{t['mean_err']:.1%}, max {t['max_err']:.1%}; sim/real median {t['bias']:.2f}; Kendall tau {t['tau']:.3f}")
