"""`tune report`: a self-contained HTML page (inline SVG, no scripts, no network) and results.csv."""
import re
import xml.etree.ElementTree as ET

import numpy as np
import optuna
import pandas as pd

from tuner.cli import main
from tuner.study.identity import study_dir
from tuner.runtime.metrics import records_frame
from serving.workload import RequestRecord
from tuner.runtime.trial import TrialOutcome

DBS = "model_config.decode_batch_size"


def fake_run_trial(ctx, params, stop=None, replays=1):
    """Per-request records as tuner.runtime.trial writes them; larger batches finish sooner; 64 runs out of memory."""
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    dbs = params[DBS]
    if dbs == 64:
        return TrialOutcome(fail_class="oom", fail_detail="exited before ready", log_tail="out of memory")
    rng = np.random.default_rng(dbs)
    recs = []
    for i in range(20):
        sent = i * 0.05
        e2e = 0.2 + 4.0 / dbs * rng.random()
        recs.append(RequestRecord(i, 10, 5, sent, sent, sent + e2e / 5, sent + e2e, [sent + e2e], 5, "length"))
    records_frame(recs).to_csv(ctx.run_dir / "requests.csv", index=False)
    total = max(r.done for r in recs)
    return TrialOutcome(metrics={"total_time": total, "utilisation": 30.0 + dbs, "requests": 20.0,
                                 "ttft_p99": 0.1, "energy_j_per_token": 0.5 + 0.02 * dbs,
                                 "startup_s": 3.0, "replay_s": total + 0.5, "stop_s": 0.5}, records=recs)


def test_report_is_self_contained_with_every_section(project_root, monkeypatch):
    monkeypatch.setattr("tuner.runtime.measure.run_trial", fake_run_trial)
    common = ["--root", str(project_root), "--storage", f"sqlite:///{project_root / 'trials' / 'r.db'}"]
    assert main(["run", *common, "--n-trials", "8", "--no-progress", "sampler=random", "seed=2"]) == 0
    assert main(["report", *common]) == 0
    study = optuna.load_study(study_name="pa_batching", storage=common[-1])
    folder = study_dir(project_root, study)   # the study's own folder: trials/pa_batching-<uid8>/
    html = (folder / "report.html").read_text()
    for section in ("Where the time went", "Latency distributions", "Energy per token", "Trials"):
        assert f"<h2>{section}</h2>" in html
    # what optuna-dashboard draws from the study is left to it, and the report says where
    assert "Optimisation history" not in html and f"tune dashboard --study {study.study_name}" in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) >= 2
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    assert "trial 1" in html
    energy = re.search(r'<div id="energy-front">.*?</div>', html, flags=re.S).group(0)
    assert "J/token" in energy and energy.count("(Pareto)") >= 2   # faster costs more energy here: a real front
    spent = re.search(r"<h2>Where the time went</h2><p>(.*?)</p>", html).group(1)
    assert re.search(r"startup [\d.]+ s \(\d+ %\), replay [\d.]+ s \(\d+ %\), stop [\d.]+ s", spent)
    df = pd.read_csv(folder / "results.csv")
    assert len(df) == 8 and {"number", "state", "outcome", "total_time", "utilisation", f"param.{DBS}",
                             "startup_s", "replay_s", "stop_s"} <= set(df)
    assert set(df["outcome"]) <= {"feasible", "infeasible"}
    oom = df[df[f"param.{DBS}"] == 64]
    assert (oom["outcome"] == "infeasible").all() and (oom["fail_class"] == "oom").all()


def test_energy_front_keeps_points_no_other_beats_on_both():
    from tuner.results.energy_chart import front
    pts = [(10.0, 1.0, 0), (12.0, 0.8, 1), (11.0, 1.2, 2), (15.0, 0.8, 3), (9.0, 2.0, 4)]
    assert [n for _, _, n in front(pts, maximize_x=False)] == [4, 0, 1]
    assert [n for _, _, n in front(pts, maximize_x=True)] == [3]     # capacity 15 at the lowest J/token
