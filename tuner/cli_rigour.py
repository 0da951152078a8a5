"""Subcommands for study rigour, registered into tuner.cli's parser:

  tune --study S --devices 0,1 [--n-trials N]     one worker per device on this host
  tune finalize --study S [--top-k K] [--repeats M] [--confidence C]
  tune dashboard --study S [--port P]             optuna-dashboard on 127.0.0.1
  tune report --study S                           trials/<study>/report.html + results.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def register(sub, common: Callable[[argparse.ArgumentParser], None], context: Callable) -> None:
    from tuner.cli import between, count
    run = sub.choices["run"]
    run.add_argument("--devices", help="one worker per device id, e.g. 0,1 (trials split between them)")
    plain_run = run.get_default("func")

    def cmd_run(args) -> int:
        if not getattr(args, "devices", None):
            return plain_run(args)
        from tuner.study.resume import recover
        from tuner.study.run import StudyRun
        from tuner.study.workers import parse_devices, run_workers
        from serving.config.errors import ConfigError
        from tuner.study.preflight import check_inputs
        root, space, storage = context(args)
        try:
            devices = parse_devices(args.devices)
        except ValueError as err:
            raise ConfigError(str(err), key="--devices") from None
        run = StudyRun(space, root, storage)
        check_inputs(space, root, run.plan)
        recover(run.open_study())  # once, before the workers race for it; refuses a study of other conditions
        n = space.n_trials if args.n_trials is None else args.n_trials
        rc = run_workers(args.study, root, storage, devices, n, args.overrides)
        print(f"study {space.study!r}: {len(devices)} workers finished (exit {rc}) in {storage}")
        return rc

    run.set_defaults(func=cmd_run)

    fin = sub.add_parser("finalize", help="re-run the top finalists and declare a winner only with confidence")
    common(fin)
    fin.add_argument("--top-k", type=count(2), help="finalists (default: the space's finalists.top_k)")
    fin.add_argument("--repeats", type=count(2), help="fresh runs of each (default: finalists.repeats)")
    fin.add_argument("--confidence", type=between(0.5, 1.0), help="e.g. 0.95 (default: finalists.confidence)")
    fin.add_argument("--device", type=count(0), help="accelerator device id for the stack")
    fin.set_defaults(func=lambda a: cmd_finalize(a, context))

    dash = sub.add_parser("dashboard", help="start optuna-dashboard on 127.0.0.1 for the study")
    common(dash)
    dash.add_argument("--port", type=count(0), default=0, help="port (default: a free one)")
    dash.set_defaults(func=lambda a: cmd_dashboard(a, context))

    rep = sub.add_parser("report", help="write trials/<study>/report.html and results.csv")
    common(rep)
    rep.add_argument("--out", type=Path, help="folder (default trials/<study>/)")
    rep.set_defaults(func=lambda a: cmd_report(a, context))


def cmd_finalize(args, context) -> int:
    from tuner.study.finalists import describe, finalize
    from tuner.study.preflight import check_inputs
    from tuner.study.run import StudyRun
    from tuner.study.storage import load_study
    root, space, storage = context(args, create=False)
    run = StudyRun(space, root, storage, device_id=args.device)
    study = run.bind(load_study(storage, space.study))  # refuses re-measuring under other conditions
    check_inputs(space, root, run.plan)
    try:
        verdict = finalize(run, study, args.top_k, args.repeats, args.confidence,
                           on_sample=lambda n, r, v: print(f"finalist trial {n} run {r}: {space.objectives[0].name}"
                                                           f"={v:.4g}", flush=True))
    except ValueError as err:
        print(f"tune: error: {err}", file=sys.stderr)
        return 1
    print(describe(verdict))
    print(f"export follows this verdict: tune export --study {space.study}")
    return 0


def cmd_dashboard(args, context) -> int:
    from tuner.results.dashboard import serve
    from tuner.study.identity import study_dir
    from tuner.study.storage import load_study
    root, space, storage = context(args, create=False)
    study = load_study(storage, space.study)  # an existing study: nothing is created for a wrong name
    return serve(storage, space.study, study_dir(root, study) / "dashboard.log", args.port)


def cmd_report(args, context) -> int:
    from tuner.results.report import write_report
    from tuner.study.identity import study_dir
    from tuner.study.storage import load_study
    root, space, storage = context(args, create=False)
    study = load_study(storage, space.study)
    html, csv = write_report(study, args.out or study_dir(root, study))
    print(f"wrote {html}\nwrote {csv}")
    return 0
