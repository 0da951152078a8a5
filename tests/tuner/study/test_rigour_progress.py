"""Progress: rich bars for the study and the running replay (per repeat), plain lines with
--no-progress; every trial end state (complete, infeasible, pruned, failed) is named."""
import io
import re

from rich.console import Console

from tuner.cli import main
from tuner.study.progress import PlainProgress, RichStudyProgress
from serving.workload import RequestRecord
from tuner.runtime.trial import TrialOutcome

OK = TrialOutcome(metrics={"total_time": 1.5, "utilisation": 40.0})
OOM = TrialOutcome(fail_class="oom", fail_detail="exited before ready")


def test_rich_progress_shows_trials_replays_and_outcomes():
    p = RichStudyProgress(3, 2, ["total_time", "utilisation"],
                          console=Console(file=io.StringIO(), width=120, force_terminal=False))
    p.trial_started(0, {"model_config.decode_batch_size": 8})
    p.repeat_started(1, 3)
    p.request_done(RequestRecord(0, 1, 1, 0.0))
    assert p.bar.tasks[-1].description == "  replay #0 (2/3)" and p.bar.tasks[-1].completed == 1
    p.trial_finished(0, OK, "complete")
    p.trial_finished(1, OOM, "infeasible")
    p.trial_finished(2, OK, "pruned")
    p.recovered([4], [1234])
    p.close()
    out = p.console.file.getvalue()
    assert "trial 0" in out and "total_time=1.500" in out and "infeasible oom: exited before ready" in out
    assert "pruned (slower than the best + margin)" in out and "trials [4] of a dead tune" in out
    assert p.bar.tasks[0].completed == 3


def test_plain_progress_lines(capsys):
    p = PlainProgress(["total_time"], prefix="[device 1] ")
    p.trial_finished(3, OK)
    p.trial_finished(4, OOM, "failed")
    assert capsys.readouterr().out.splitlines() == ["[device 1] trial 3: total_time=1.500",
                                                    "[device 1] trial 4: failed oom: exited before ready"]


def test_cli_bars_by_default_and_lines_with_no_progress(project_root, monkeypatch, capsys):
    def run_trial(ctx, params, stop=None, replays=1):
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        for _, req in ctx.plan:
            ctx.on_request(RequestRecord(req.index, 1, 1, 0.0))
        return TrialOutcome(metrics={"total_time": 1.0, "utilisation": 50.0})

    monkeypatch.setattr("tuner.runtime.measure.run_trial", run_trial)
    common = ["--root", str(project_root), "--storage", f"sqlite:///{project_root / 'trials' / 'p.db'}",
              "--n-trials", "1", "load.duration=0.5"]
    assert main(["run", *common]) == 0
    err = capsys.readouterr().err
    assert re.search(r"trials .*1/1", err) and re.search(r"replay #0 .* 12/12", err)  # 25 qps x 0.5 s
    assert main(["run", *common, "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "trial 1: total_time=1.000" in cap.out and "replay #" not in cap.err


def test_the_trial_line_says_where_its_time_went(capsys):
    timed = TrialOutcome(metrics={"total_time": 1.5, "startup_s": 61.04, "replay_s": 9.6, "stop_s": 0.31})
    PlainProgress(["total_time"]).trial_finished(5, timed)
    assert capsys.readouterr().out.strip() == "trial 5: total_time=1.500 [startup 61.0 s, replay 9.6 s, stop 0.3 s]"
