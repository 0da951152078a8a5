"""Fault injection, two parts.

  python bench/faults.py [--trials 20] [--skip-stack-faults] [--skip-signals] [--only CMD ...]

Stack faults: a study whose trials crash, run out of memory, hang, find their port taken or get
a malformed stream (the test-only stack tests/tuner/faulty_stack.py, trial n gets FAULTS[n % 6])
in a throwaway project copy; one row per trial, the process groups left running (must be 0) and
whether one more trial resumes the same study.

Signals: every subcommand that starts a process (study, --devices workers, bare-run, profile,
dashboard, calibrate) gets SIGINT, SIGTERM, SIGHUP or SIGKILL once its engine (or dashboard) is
up; the study and the workers also get their stdout closed (``| head -1``). A KILL is followed by
the next command a user would run (``tune run`` again for a study, ``tune report`` otherwise).
Counted per run: processes the command started still running a minute later (by process tree,
so it needs no tag and measures any version of the tuner) and trials lost (a finished
measurement not stored COMPLETE, or a failed trial never queued again).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)
from _common import ROOT, table, run_recorded

import optuna
import psutil

from tuner.runtime.constraints import failed_for_config

STUDY = "pa_faults"
FAST = ["backend=faulty", "load.qps=20", "load.duration=0.5", "load.request_timeout=2", "timeouts.ready=20", "timeouts.replay=10",
        "sampler=random", "seed=0", f"study={STUDY}", "params.pa_config.num_blocks.low=256",
        "params.model_config.decode_batch_size.choices=[8,16]", "params.model_config.prefill_batch_size.choices=[2,4]"]


def stack_faults(args) -> int:
    from serving.stacks import register_stack
    from tests.tuner.faulty_stack import EXPECTED
    from tuner.runtime.constraints import outcome
    from tuner.runtime.ownership import tagged_groups
    from tuner.space.compose import load_space
    from tuner.study.run import StudyRun
    register_stack("faulty", "tests.tuner.faulty_stack:FaultyStack")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("search_spaces", "configs", "traces"):
            shutil.copytree(ROOT / name, root / name)
        storage = f"sqlite:///{root / 'faults.db'}"
        space = load_space("pa_batching", root, FAST)
        t0 = time.monotonic()
        study = StudyRun(space, root, storage).run(args.trials)
        took = time.monotonic() - t0
        rows, wrong = [], 0
        for t in study.trials:
            kind = (Path(t.user_attrs["run_dir"]) / "fault").read_text()
            cls = t.user_attrs.get("fail_class")
            wrong += cls != EXPECTED[kind]
            feasible = "yes" if outcome(t) == "feasible" else "no"
            rows.append([t.number, kind, t.state.name, feasible, cls or "-",
                         (t.user_attrs.get("fail_detail") or "")[:60]])
        table(["trial", "injected", "state", "feasible", "recorded cause", "detail"], rows)
        left = tagged_groups(STUDY)
        again = StudyRun(space, root, storage).run(1)
        running = again.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        print(f"\n{args.trials} trials in {took:.1f} s; causes recorded right: {args.trials - wrong}/{args.trials}; "
              f"process groups left: {len(left)}; resumed to {len(again.trials)} trials, {len(running)} RUNNING")
        return 0 if wrong == 0 and not left and not running else 1


# -- signals x subcommands ------------------------------------------------------------------------
SIG_FAST = ["load.qps=20", "load.duration=1", "sampler=random", "params.pa_config.num_blocks.low=256",
            "params.model_config.decode_batch_size.choices=[8,16]"]
SMALL_MODEL = {"engine_config.hidden_size": 48, "engine_config.num_layers": 1, "engine_config.intermediate_size": 128}
SERVERS = ("serving.engine.server", "optuna-dashboard")
SETTLE_S = 60.0   # a worker whose parent died may finish its trial first


def commands(root: Path, storage: str) -> dict[str, list[str]]:
    return {
        "study": ["run", "--storage", storage, "--no-progress", "--n-trials", "20"],
        "workers": ["run", "--storage", storage, "--devices", "0,1", "--n-trials", "40", "--no-progress"],
        "bare-run": ["bare-run"],
        "profile": ["profile", "-c", "2", "-pt", "8", "-ct", "32", "-tr", "500", "-w", "0"],
        "dashboard": ["dashboard", "--storage", storage],
        "calibrate": ["calibrate", "--runs", "1x1,2x1", "--out", str(root / "profile.yaml")],
    }


def tune(root: Path, args: list[str], study: str, **popen) -> subprocess.Popen:
    popen.setdefault("stdout", subprocess.DEVNULL)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", *args, "--root", str(root), *SIG_FAST, f"study={study}"],
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True, env=env, **popen)


def descendants(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            out += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    return out


def live(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def wait_up(proc: subprocess.Popen, limit: float = 180.0) -> bool:
    """Until a server (engine or dashboard) runs below ``proc``, then a moment into its work."""
    end = time.monotonic() + limit
    me = psutil.Process(proc.pid)
    while time.monotonic() < end and proc.poll() is None:
        for p in descendants([me])[1:]:
            try:
                if any(s in " ".join(p.cmdline()) for s in SERVERS):
                    time.sleep(1.5)
                    return True
            except psutil.Error:
                continue
        time.sleep(0.1)
    return False


def lost_trials(storage: str, study: str) -> tuple[int, int]:
    """(trials lost, trials stored) of ``study``: a finished measurement (outcome.json) stored neither
    COMPLETE nor infeasible (a configuration that failed is FAIL with ``feasible`` false), or a FAIL
    trial of the machine whose configuration was never queued again."""
    try:
        trials = optuna.load_study(study_name=study, storage=storage).trials
    except KeyError:
        return 0, 0
    retried = {t.user_attrs.get("retry_of") for t in trials}
    lost = 0
    for t in trials:
        measured = t.user_attrs.get("run_dir") and (Path(t.user_attrs["run_dir"]) / "outcome.json").exists()
        infeasible = failed_for_config(t)
        if (measured and t.state != optuna.trial.TrialState.COMPLETE and not infeasible) or \
                (t.state == optuna.trial.TrialState.FAIL and not infeasible and t.number not in retried):
            lost += 1
    return lost, len(trials)


def one_fault(root: Path, storage: str, command: str, fault: str, study: str) -> list:
    args = commands(root, storage)[command]
    if command == "dashboard":
        optuna.create_study(study_name=study, storage=storage)
    pipe = fault == "closed stdout"
    proc = tune(root, args, study, stdout=subprocess.PIPE if pipe else subprocess.DEVNULL)
    hang = False
    if pipe:
        proc.stdout.readline()
        proc.stdout.close()
    if not wait_up(proc):
        if not pipe:
            proc.kill()
            proc.wait()
            return [command, fault, "did not start", "-", "-", "-", "-"]
    tree = descendants([psutil.Process(proc.pid)])[1:] if proc.poll() is None else []
    if not pipe:
        os.kill(proc.pid, getattr(signal, fault))
    try:
        rc = proc.wait(timeout=600 if pipe else 90)
    except subprocess.TimeoutExpired:
        hang = True
        tree += descendants([psutil.Process(proc.pid)])[1:]
        os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    if fault == "SIGKILL":  # the next command a user runs
        nxt = ["run", "--storage", storage, "--no-progress", "--n-trials", "1"] if command in ("study", "workers") \
            else ["report", "--storage", storage]
        subprocess.run([sys.executable, "-m", "tuner.cli", *nxt, "--root", str(root), *SIG_FAST, f"study={study}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    end = time.monotonic() + SETTLE_S
    while live(descendants(tree)) and time.monotonic() < end:
        time.sleep(0.5)
    left = live(descendants(tree))
    for p in left:  # what this bench started and the tuner left: ended here by its group, never by name
        try:
            os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    lost, n = lost_trials(storage, study) if command in ("study", "workers") else (0, "-")
    return [command, fault, rc, "yes" if hang else "no", len(left), lost, n]


def signal_matrix(args) -> int:
    faults = ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("search_spaces", "configs", "traces"):
            shutil.copytree(ROOT / name, root / name)
        (root / "trials").mkdir()
        from serving.config.render import render  # a smaller model: the same code path, quicker trials
        tiny = root / "configs/llama/tiny_llama_pa.yaml"
        render(tiny, SMALL_MODEL, tiny)
        storage = f"sqlite:///{root / 'trials' / 'signals.db'}"
        t0 = time.monotonic()
        for command in args.only or list(commands(root, storage)):
            for fault in faults + (["closed stdout"] if command in ("study", "workers") else []):
                study = f"sig_{command}_{fault.replace(' ', '_')}".replace("-", "_").lower()
                rows.append(one_fault(root, storage, command, fault, study))
                print(f"  {rows[-1]}", flush=True)
        took = time.monotonic() - t0
    print()
    table(["command", "fault", "exit", "hang", "processes left", "trials lost", "trials"], rows)
    left = sum(r[4] for r in rows if isinstance(r[4], int))
    lost = sum(r[5] for r in rows if isinstance(r[5], int))
    bad = sum(1 for r in rows if (isinstance(r[4], int) and r[4]) or (isinstance(r[5], int) and r[5]) or r[3] == "yes")
    print(f"\n{len(rows)} signal/pipe faults in {took:.0f} s: processes left {left}, trials lost {lost}, "
          f"hangs {sum(r[3] == 'yes' for r in rows)}, runs with a fault not handled {bad}/{len(rows)}")
    return 0 if bad == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--skip-stack-faults", action="store_true")
    ap.add_argument("--skip-signals", action="store_true")
    ap.add_argument("--only", nargs="+", help="signal part: only these commands (study workers bare-run ...)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rc = 0 if args.skip_stack_faults else stack_faults(args)
    return max(rc, 0 if args.skip_signals else signal_matrix(args))


if __name__ == "__main__":
    raise SystemExit(run_recorded("faults", main))
