"""``tune``: thin command line over the study, export and analysis entry points.

  tune --study pa_batching [--n-trials N] [--storage URL] [key=value ...]
  tune export --study pa_batching [--to configs/llama/NAME.yaml]
  tune bare-run --study pa_batching
  tune finalize | dashboard | report --study pa_batching     (tuner.cli_rigour)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from serving.config.errors import ConfigError
from tuner.runtime.output import safe_print, silence_broken
from tuner.runtime.signals import stop_signals_interrupt
from tuner.space.compose import find_root, load_space
from tuner.study.run import StudyRun, default_storage


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default="pa_batching", help="search_spaces/<study>.yaml (default pa_batching)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///trials/<study>.db)")
    p.add_argument("--root", type=Path, help="project directory holding search_spaces/ (default: current)")
    p.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides of the search space")


def _context(args, sweep: bool = True):
    """(root, space, storage) for a command; first ends what a SIGKILLed tune of the same study left
    running on this host (a trial's stack, a bare-run's or profile's engine, a dashboard), which
    ``tune run`` does itself when it resumes (tuner.study.resume.recover)."""
    root = find_root(args.root)
    space = load_space(args.study, root, args.overrides)
    storage = args.storage or default_storage(root, space.study)
    if sweep:
        from tuner.study.resume import end_orphans
        ended = end_orphans(space.study)
        if ended:
            safe_print(f"tune: ended {len(ended)} process group(s) a killed tune of study {space.study!r} "
                       f"left running", file=sys.stderr)
    return root, space, storage


def cmd_run(args) -> int:
    root, space, storage = _context(args, sweep=False)
    n = args.n_trials or space.n_trials
    run = StudyRun(space, root, storage, device_id=args.device, parent=args.parent)
    n_requests = len(run.plan())
    names = [o.name for o in space.objectives]
    if args.no_progress:
        from tuner.study.progress import PlainProgress
        run.progress = PlainProgress(names)
    else:
        from tuner.study.progress import RichStudyProgress
        run.progress = RichStudyProgress(n, n_requests, names)
    try:
        study = run.run(n)
    finally:
        run.progress.close()
    from tuner.study.run import feasible_trials
    done = feasible_trials(study)  # infeasible (failed, SLO broken) trials are COMPLETE too
    # the study is stored: a reader that went away (`| head -1`) costs nothing from here on
    safe_print(f"study {space.study!r}: {len(study.trials)} trials ({len(done)} complete and feasible) in {storage}")
    if done:
        from tuner.study.run import best_trial
        best = best_trial(study)
        safe_print(f"best: trial {best.number} " + ", ".join(f"{k}={v:.4g}" for k, v in zip(study.metric_names, best.values))
                   + " | " + ", ".join(f"{k}={v}" for k, v in space.config_of(best.params).items()))
        safe_print(f"export it with: tune export --study {args.study}" + "".join(f" {o}" for o in args.overrides))
    return 0


def cmd_export(args) -> int:
    from tuner.results.export import export_best
    root, space, storage = _context(args)
    from tuner.study.storage import open_storage
    study = optuna.load_study(study_name=space.study, storage=open_storage(storage))
    out = export_best(study, space, root, args.to)
    print(f"wrote {out}")
    return 0


def cmd_bare_run(args) -> int:
    from tuner.tools.bare_run import bare_run
    root, space, _ = _context(args)
    bare_run(space, root, params=None)
    return 0


def cmd_profile(args) -> int:
    from serving.stacks.base import LaunchError
    from tuner.tools.profile import make_cells, print_table, profile, write_csv
    root, space, _ = _context(args)
    cells = make_cells(args.concurrency, args.prompt_tokens, args.completion_tokens)
    out = args.csv or root / "trials" / space.study / "profile" / "profile_generation.csv"
    try:
        rows = profile(space, root, cells, args.rounds, out.parent, args.config, args.warmup_rounds, args.device,
                       on_row=lambda r: print(f"cell c={r['concurrency']} p={r['prompt_tokens']} "
                                              f"o={r['completion_tokens']}: {r['output_tokens_per_s']:.1f} tok/s"))
    except LaunchError as err:
        print(f"tune: error: the stack did not come up: {err}\n{err.log_tail[-1500:]}", file=sys.stderr)
        return 1
    write_csv(rows, out)
    print_table(rows)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tune", description="Tune an LLM serving stack by measuring it.")
    sub = ap.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run (or resume) a study (the default command)")
    _common(run)
    run.add_argument("--n-trials", type=int, help="trials to run now (default: the space's n_trials)")
    run.add_argument("--device", type=int, help="accelerator device id for the stack")
    run.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    run.add_argument("--parent", help=argparse.SUPPRESS)  # owner id of the `tune --devices` running this worker
    run.set_defaults(func=cmd_run)
    exp = sub.add_parser("export", help="write the best configuration as YAML")
    _common(exp)
    exp.add_argument("--to", type=Path, help="output file (default configs/llama/<base>_<study>_best.yaml)")
    exp.set_defaults(func=cmd_export)
    bare = sub.add_parser("bare-run", help="replay the trace with the engine stopped at each stage")
    _common(bare)
    bare.set_defaults(func=cmd_bare_run)
    prof = sub.add_parser("profile", help="static benchmark (LMDeploy profile_generation): concurrency x "
                          "(prompt, completion) tokens, closed loop")
    _common(prof)
    prof.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8],
                      help="workers per cell (LMDeploy uses 1 16 32 64; mind decode_batch_size)")
    prof.add_argument("-pt", "--prompt-tokens", type=int, nargs="+", default=[1, 128, 128, 512],
                      help="prompt lengths (words = tokens), paired one to one with --completion-tokens")
    prof.add_argument("-ct", "--completion-tokens", type=int, nargs="+", default=[128, 128, 512, 128],
                      help="max_new_tokens per request, paired with --prompt-tokens")
    prof.add_argument("-tr", "--rounds", type=int, default=3, help="requests each worker sends per cell")
    prof.add_argument("-w", "--warmup-rounds", type=int, default=1, help="unrecorded rounds before each cell")
    prof.add_argument("--config", type=Path, help="serving YAML to profile (default: the study's base config)")
    prof.add_argument("--csv", type=Path, help="output (default trials/<study>/profile/profile_generation.csv)")
    prof.add_argument("--device", type=int, help="accelerator device id for the stack")
    prof.set_defaults(func=cmd_profile)
    from tuner.cli_rigour import register  # --devices, finalize, dashboard, report
    register(sub, _common, _context)
    from tuner.tools import calibrate
    calibrate.add_parser(sub, _common)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    commands = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]  # `tune --study S` means `tune run --study S`
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with stop_signals_interrupt():  # TERM and HUP unwind like Ctrl-C: what we started is stopped
            return args.func(args)
    except ConfigError as err:
        safe_print(f"tune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        safe_print("tune: interrupted; the study is saved and resumes with the same command", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away; what was measured is stored
        silence_broken()
        return 141  # 128 + SIGPIPE, what a shell reports for a command whose pipe closed


if __name__ == "__main__":
    sys.exit(main())
