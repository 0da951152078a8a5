"""``tune``: thin command line over the study, export and analysis entry points.

  tune --study pa_batching [--n-trials N] [--storage URL] [key=value ...]
  tune export --study pa_batching [--to configs/llama/NAME.yaml] [--force]
  tune bare-run --study pa_batching
  tune finalize | dashboard | report --study pa_batching     (tuner.cli_rigour)

Bad input (a space, an override, a storage URL, a trace, a flag) ends every command with one
line on stderr, ``tune: error: <file>: <key>: <what must hold>, <what was found>``, and exit
status 2, before anything is written: every expected error is a ConfigError, and ``main`` is
the one place that prints it. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from serving.config.errors import ConfigError
from tuner.space.compose import find_root, load_space
from tuner.study.preflight import check_inputs
from tuner.study.run import StudyRun, default_storage, trial_config
from tuner.study.storage import check_url, load_study


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (what argparse says) and exit 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def count(least: int):
    """An argparse type: an int >= ``least`` (``--n-trials 0`` is refused, not read as the default)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"an integer >= {least} must be given, got {text!r}") from None
        if v < least:
            raise argparse.ArgumentTypeError(f"an integer >= {least} must be given, got {v}")
        return v
    parse.__name__ = f"int >= {least}"
    return parse


def between(low: float, high: float):
    """An argparse type: a number with low < x < high."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not low < v < high:
            raise argparse.ArgumentTypeError(f"a number between {low:g} and {high:g} (exclusive) must be given, "
                                             f"got {text!r}")
        return v
    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default="pa_batching", help="search_spaces/<study>.yaml (default pa_batching)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///trials/<study>.db)")
    p.add_argument("--root", type=Path, help="project directory holding search_spaces/ (default: current)")
    p.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides of the search space")


def _context(args, create: bool = True):
    """(root, space, storage URL), checked: the storage URL's form, and with ``create=False`` (commands
    that read a study) that its file exists. Nothing is written here."""
    root = find_root(args.root)
    space = load_space(args.study, root, args.overrides)
    storage = default_storage(root, space.study) if args.storage is None else args.storage
    check_url(storage, create)
    return root, space, storage


def cmd_run(args) -> int:
    root, space, storage = _context(args)
    n = space.n_trials if args.n_trials is None else args.n_trials
    run = StudyRun(space, root, storage, device_id=args.device)
    check_inputs(space, root, run.plan)   # before the storage and the first trial
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
    print(f"study {space.study!r}: {len(study.trials)} trials ({len(done)} complete and feasible) in {storage}")
    if done:
        from tuner.study.run import best_trial
        best = best_trial(study)
        print(f"best: trial {best.number} " + ", ".join(f"{k}={v:.4g}" for k, v in zip(study.metric_names, best.values))
              + " | " + ", ".join(f"{k}={v}" for k, v in trial_config(best).items()))
        print(f"export it with: tune export --study {args.study}" + "".join(f" {o}" for o in args.overrides))
    return 0


def cmd_export(args) -> int:
    from tuner.results.export import export_best
    root, space, storage = _context(args, create=False)
    out = export_best(load_study(storage, space.study), space, root, args.to, args.force)
    print(f"wrote {out}")
    return 0


def cmd_bare_run(args) -> int:
    from tuner.tools.bare_run import bare_run
    root, space, _ = _context(args)
    check_inputs(space, root, StudyRun(space, root, "").plan)
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
    ap = Parser(prog="tune", description="Tune an LLM serving stack by measuring it.")
    sub = ap.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run (or resume) a study (the default command)")
    _common(run)
    run.add_argument("--n-trials", type=count(1), help="trials to run now, >= 1 (default: the space's n_trials)")
    run.add_argument("--device", type=count(0), help="accelerator device id for the stack")
    run.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    run.set_defaults(func=cmd_run)
    exp = sub.add_parser("export", help="write the best configuration as YAML")
    _common(exp)
    exp.add_argument("--to", type=Path, help="output file (default configs/llama/<base>_<study>_best.yaml)")
    exp.add_argument("--force", action="store_true", help="overwrite an existing output file (never the base config)")
    exp.set_defaults(func=cmd_export)
    bare = sub.add_parser("bare-run", help="replay the trace with the engine stopped at each stage")
    _common(bare)
    bare.set_defaults(func=cmd_bare_run)
    prof = sub.add_parser("profile", help="static benchmark (LMDeploy profile_generation): concurrency x "
                          "(prompt, completion) tokens, closed loop")
    _common(prof)
    prof.add_argument("-c", "--concurrency", type=count(1), nargs="+", default=[1, 8],
                      help="workers per cell (LMDeploy uses 1 16 32 64; mind decode_batch_size)")
    prof.add_argument("-pt", "--prompt-tokens", type=count(1), nargs="+", default=[1, 128, 128, 512],
                      help="prompt lengths (words = tokens), paired one to one with --completion-tokens")
    prof.add_argument("-ct", "--completion-tokens", type=count(1), nargs="+", default=[128, 128, 512, 128],
                      help="max_new_tokens per request, paired with --prompt-tokens")
    prof.add_argument("-tr", "--rounds", type=count(1), default=3, help="requests each worker sends per cell")
    prof.add_argument("-w", "--warmup-rounds", type=count(0), default=1, help="unrecorded rounds before each cell")
    prof.add_argument("--config", type=Path, help="serving YAML to profile (default: the study's base config)")
    prof.add_argument("--csv", type=Path, help="output (default trials/<study>/profile/profile_generation.csv)")
    prof.add_argument("--device", type=count(0), help="accelerator device id for the stack")
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
        return args.func(args)
    except ConfigError as err:  # bad input, found before anything was written: one line
        print(f"tune: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tune: interrupted; the study is saved and resumes with the same command", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
