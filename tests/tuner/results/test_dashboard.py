"""`tune dashboard`: optuna-dashboard on 127.0.0.1 for the study, trials and feasibility
rendered in headless Chromium (skipped without chromium), stopped with tune."""
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings

import optuna
import pytest

STUDY = "pa_dash"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_study(storage: str) -> None:
    """Two feasible trials and an infeasible one (fastest, but it broke a constraint)."""
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=["minimize", "maximize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["total_time", "utilisation"])
    dist = {"model_config.decode_batch_size": optuna.distributions.CategoricalDistribution([8, 16, 32])}
    for dbs, tt, util, broken in ((8, 2.0, 50.0, 0.0), (16, 1.5, 60.0, 0.0), (32, 1.0, 90.0, 1.0)):
        study.add_trial(optuna.trial.create_trial(
            params={"model_config.decode_batch_size": dbs}, distributions=dist, values=[tt, util],
            system_attrs={"constraints:failed": broken, "constraints": [broken]},
            user_attrs={"total_time": tt, "feasible": not broken}))


def get(url: str, **headers):
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


@pytest.fixture
def dashboard(project_root):
    storage = f"sqlite:///{project_root / 'trials' / 'dash.db'}"
    make_study(storage)
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--root", str(project_root),
                             "--storage", storage, f"study={STUDY}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("optuna-dashboard: http://127.0.0.1:"), line + proc.stdout.read()
        yield proc, line.split(": ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)  # tune stops the dashboard's process group on its way out
        proc.wait(timeout=20)


def test_dashboard_serves_the_study_with_feasibility_and_stops_with_tune(dashboard):
    proc, url = dashboard
    base = url.split("/dashboard/")[0]
    study_id = url.rsplit("/", 1)[1]
    status, body = get(f"{base}/api/studies/{study_id}?after=0")
    data = json.loads(body)
    assert status == 200 and len(data["trials"]) == 3
    assert [t["constraints"] for t in data["trials"]] == [[0.0], [0.0], [1.0]]   # the dashboard's old key
    assert get(f"{base}/static/bundle.js", **{"Accept-Encoding": "gzip"})[0] == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    time.sleep(0.2)
    with pytest.raises(OSError):
        get(f"{base}/api/studies")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_study_and_trials_render_in_headless_chromium(dashboard, tmp_path):
    _, url = dashboard
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=8000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
    assert STUDY in dom and "Pareto Front" in dom and "History" in dom
    assert "Infeasible" in dom                     # feasibility shown, through the constraints list
    assert "Trial (number=2)" in dom or "number=2" in dom
