"""``tune``: thin command line over the study, export and analysis entry points.

  tune --study pa_batching [--n-trials N] [--storage URL] [key=value ...]
  tune export --study pa_batching [--to configs/llama/NAME.yaml]
  tune bare-run --study pa_batching
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from serving.config.errors import ConfigError
from tuner.compose import find_root, load_space
from tuner.study import StudyRun, default_storage


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default="pa_batching", help="search_spaces/<study>.yaml (default pa_batching)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///trials/<study>.db)")
    p.add_argument("--root", type=Path, help="project directory holding search_spaces/ (default: current)")
    p.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides of the search space")


def _context(args):
    root = find_root(args.root)
    space = load_space(args.study, root, args.overrides)
    storage = args.storage or default_storage(root, space.study)
    return root, space, storage


def cmd_run(args) -> int:
    root, space, storage = _context(args)
    n = args.n_trials or space.n_trials
    run = StudyRun(space, root, storage, device_id=args.device)
    n_requests = len(run.plan())
    names = [o.name for o in space.objectives]
    if args.no_progress:
        from tuner.progress import PlainProgress
        run.progress = PlainProgress(names)
    else:
        from tuner.progress import RichStudyProgress
        run.progress = RichStudyProgress(n, n_requests, names)
    try:
        study = run.run(n)
    finally:
        run.progress.close()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    print(f"study {space.study!r}: {len(study.trials)} trials ({len(done)} complete) in {storage}")
    if done:
        from tuner.study import best_trial
        best = best_trial(study)
        print(f"best: trial {best.number} " + ", ".join(f"{k}={v:.4g}" for k, v in zip(study.metric_names, best.values))
              + " | " + ", ".join(f"{k}={v}" for k, v in best.params.items()))
        print(f"export it with: tune export --study {space.study}")
    return 0


def cmd_export(args) -> int:
    from tuner.export import export_best
    root, space, storage = _context(args)
    study = optuna.load_study(study_name=space.study, storage=storage)
    out = export_best(study, space, root, args.to)
    print(f"wrote {out}")
    return 0


def cmd_bare_run(args) -> int:
    from tuner.bare_run import bare_run
    root, space, _ = _context(args)
    bare_run(space, root, params=None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tune", description="Tune an LLM serving stack by measuring it.")
    sub = ap.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run (or resume) a study (the default command)")
    _common(run)
    run.add_argument("--n-trials", type=int, help="trials to run now (default: the space's n_trials)")
    run.add_argument("--device", type=int, help="accelerator device id for the stack")
    run.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    run.set_defaults(func=cmd_run)
    exp = sub.add_parser("export", help="write the best configuration as YAML")
    _common(exp)
    exp.add_argument("--to", type=Path, help="output file (default configs/llama/<base>_<study>_best.yaml)")
    exp.set_defaults(func=cmd_export)
    bare = sub.add_parser("bare-run", help="replay the trace with the engine stopped at each stage")
    _common(bare)
    bare.set_defaults(func=cmd_bare_run)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    commands = {a.dest for a in ap._actions if isinstance(a, argparse._SubParsersAction)}
    names = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or (argv[0] not in names and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]  # `tune --study S` means `tune run --study S`
    del commands
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"tune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tune: interrupted; the study is saved and resumes with the same command", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
