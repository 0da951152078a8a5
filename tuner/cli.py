"""``tune``: the one command line over the study, its results and the tools beside it.

  tune --study pa_batching [--n-trials N] [--storage URL] [--devices 0,1] [key=value ...]
     (overrides and flags in any order; `tune run` also writes trials/<study>-<uid8>/results.json)
  tune export --study pa_batching [--to configs/llama/NAME.yaml] [--force]
  tune finalize | dashboard | report --study pa_batching
  tune bare-run | profile | calibrate --study pa_batching
  tune trace stats FILE | tune trace convert FILE --to OUT [--tokenizer PATH | --study S]

Bad input (a space, an override, a storage URL, a trace, a flag) ends every command with one
line on stderr, ``tune: error: <file>: <key>: <what must hold>, <what was found>``, and exit
status 2, before anything is written: every expected error is a ConfigError (argparse's own
errors go the same way), and ``main`` is the one place that prints it. Any other exception is
a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import optuna

from serving import tokenizers
from serving.config.errors import ConfigError
from serving.stacks import LaunchError, get_stack
from serving.sim.profile_io import PROFILES
from tuner.results.dashboard import serve
from tuner.results.export import export_best
from tuner.results.results_json import write_results
from tuner.cli_args import batch_pairs, check_port_free, export_hint, port, version
from tuner.cli_reference import reference
from tuner.runtime.output import safe_print, silence_broken
from tuner.runtime.ownership import TAG_ENV, command_tag
from tuner.runtime.writes import check_target, write_chunks
from tuner.space.compose import find_root, load_space
from tuner.study.finalists import describe, finalize
from tuner.study.progress import PlainProgress, RichStudyProgress, warm_line
from tuner.study.resume import end_orphans, recover
from tuner.study.identity import check as check_conditions
from tuner.study.identity import study_dir
from tuner.study.preflight import check_inputs
from tuner.study.run import StudyRun
from tuner.search.selection import best_trial, feasible_trials, trial_config
from tuner.study.signals import stop_signals_interrupt
from tuner.study.storage import check_url, default_storage, load_study
from tuner.study.workers import parse_devices, run_workers
from tuner.tools import calibrate as cal
from tuner.tools import calibrate_replays as cal_replays
from tuner.tools.bare_run import bare_run
from tuner.tools.profile import make_cells, print_table, profile, write_csv
from tuner.workload.formats import format_names
from tuner.workload.stats import describe as describe_trace
from tuner.workload.stats import trace_stats
from tuner.workload.reading import ReadProgress
from tuner.workload.trace import Tally, converted


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


def _context(args, sweep: bool = True, create: bool = True):
    """(root, space, storage) for a command, checked: the storage URL's form, and with ``create=False``
    (commands that read a study) that its file exists; nothing is written. Then ends what a SIGKILLed
    tune of the same study left running on this host (a trial's stack, a bare-run's or profile's
    engine, a dashboard), which ``tune run`` does itself when it resumes (tuner.study.resume.recover)."""
    root = find_root(args.root)
    space = load_space(args.study, root, args.overrides)
    storage = default_storage(root, space.study) if args.storage is None else args.storage
    check_url(storage, create)
    if sweep:
        ended = end_orphans(space.study)
        if ended:
            safe_print(f"tune: ended {len(ended)} process group(s) a killed tune of study {space.study!r} "
                       f"left running", file=sys.stderr)
    return root, space, storage


def cmd_run(args) -> int:
    root, space, storage = _context(args, sweep=False)
    n = space.n_trials if args.n_trials is None else args.n_trials
    if args.devices:
        try:
            devices = parse_devices(args.devices)
        except ValueError as err:
            raise ConfigError(str(err), None, "--devices") from None
        run = StudyRun(space, root, storage, show_progress=not args.no_progress)
        check_inputs(space, root, run.plan)   # before the storage, the study and the workers
        study = run.open_study()   # refuses a study of other conditions
        recover(study)             # once, before the workers race for it
        warm = run.warm_start(study)   # once too: the workers find its trials queued
        if warm:
            safe_print(warm_line(len(warm.simulated), [p for p, _ in warm.candidates]))
        rc = run_workers(args.study, root, storage, devices, n, args.overrides)
        safe_print(f"study {space.study!r}: {len(devices)} workers finished (exit {rc}) in {storage}")
        safe_print(f"wrote {write_results(load_study(storage, space.study), root, storage)}")
        return rc
    run = StudyRun(space, root, storage, device_id=args.device, parent=args.parent, show_progress=not args.no_progress)
    check_inputs(space, root, run.plan)   # before the storage and the first trial
    safe_print(run.planned().summary(space.load))   # the trace as read, in the stack's tokens
    names = [o.name for o in space.objectives]
    run.progress = PlainProgress(names) if args.no_progress else RichStudyProgress(n, len(run.plan()), names)
    try:
        study = run.run(n)
    finally:
        run.progress.close()
    done = feasible_trials(study)  # infeasible (failed, SLO broken) trials are COMPLETE too
    # the study is stored: a reader that went away (`| head -1`) costs nothing from here on
    safe_print(f"study {space.study!r}: {len(study.trials)} trials ({len(done)} complete and feasible) in {storage}")
    safe_print(f"wrote {write_results(study, root, storage)}")
    if done:
        best = best_trial(study)
        safe_print(f"best: trial {best.number} " + ", ".join(f"{k}={v:.4g}" for k, v in zip(study.metric_names, best.values))
                   + " | " + ", ".join(f"{k}={v}" for k, v in trial_config(best).items()))
        safe_print(f"export it with: {export_hint(args)}")
    return 0


def cmd_export(args) -> int:
    root, space, storage = _context(args, create=False)
    study = load_study(storage, space.study)
    check_conditions(study, space, root, reading=True)   # the space as given now is the one the trials were measured under
    out = export_best(study, space, root, args.to, args.force, args.follow_symlinks)
    print(f"wrote {out}")
    return 0


def cmd_finalize(args) -> int:
    root, space, storage = _context(args, create=False)
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


def cmd_dashboard(args) -> int:
    root, space, storage = _context(args, create=False)
    study = load_study(storage, space.study)  # an existing study: nothing is created for a wrong name
    if args.port:
        check_port_free(args.port)
    try:
        return serve(storage, space.study, study_dir(root, study) / "dashboard.log", args.port)
    except RuntimeError as err:  # not installed, exited at start, never answered: what it said, one line
        raise ConfigError(f"optuna-dashboard must start; {err}", key="dashboard") from None


def cmd_report(args) -> int:
    root, space, storage = _context(args, create=False)
    study = load_study(storage, space.study)
    from tuner.results.report import write_report  # pandas: only `tune report` needs it at start
    html, csv = write_report(study, args.out or study_dir(root, study))
    print(f"wrote {html}\nwrote {csv}")
    return 0


def cmd_bare_run(args) -> int:
    root, space, _ = _context(args)
    check_inputs(space, root, StudyRun(space, root, "").plan)
    bare_run(space, root, params=None)
    return 0


def cmd_profile(args) -> int:
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


def cmd_calibrate(args) -> int:
    root, space, _ = _context(args)
    stack = get_stack(space.backend)
    if stack.calibration is None:
        raise ConfigError(f"backend {space.backend!r} has no calibration: `tune calibrate` fits the simulator of a "
                          f"stack that declares one (Stack.calibration)", key="backend")
    if stack.calibration != "replays" and (args.points != cal_replays.POINTS or args.requests is not None):
        raise ConfigError(f"--points and --requests are for a stack calibrated from its replays (llm-serving), "
                          f"not backend {space.backend!r}", key="--points")
    try:
        return CALIBRATIONS[stack.calibration](args, root, space, stack)
    except LaunchError as err:
        print(f"tune: error: the stack did not come up: {err}\n{err.log_tail[-1500:]}", file=sys.stderr)
        return 1


def _calibrate_surrogate(args, root: Path, space, stack) -> int:
    """A surrogate that calibrates itself from one launch of its real stack (vLLM's)."""
    opts = stack.surrogate_options(space.backend_options(), root / "trials" / space.study)
    if args.out:
        opts = dict(opts or {}, surrogate_profile=str(args.out))
    get_stack(stack.surrogate).calibrate(
        root / space.base_config, opts, args.refit or root / "trials" / "_calibrate" / space.study,
        space.timeouts.ready, refit=bool(args.refit), env={TAG_ENV: command_tag(space.study, "calibrate")})
    return 0


def _calibrate_replays(args, root: Path, space, stack) -> int:
    """Fitted to the decode steps its replays show (llm-serving's); a launch that fails is a failed trial
    there (run_trial), named if too few steps are left."""
    home = root / "trials" / space.study
    cal_replays.calibrate(space, root, args.out or home / stack.calibrated_profile,
                          args.refit or root / "trials" / "_calibrate" / space.study, passes=args.passes,
                          refit=bool(args.refit), tag=command_tag(space.study, "calibrate"),
                          points=args.points, requests=args.requests)
    return 0


def _calibrate_steps(args, root: Path, space, stack) -> int:
    """Fitted to the per-step timings the stack reports (the embedded engine's)."""
    out = args.out or PROFILES / "embedded.yaml"
    if args.refit:
        steps, delays = cal.load_runs(args.refit)
        cal.fit_and_write(steps, delays, out, f"{args.refit} (refit)", args.runs)
        return 0
    cal.calibrate(root / space.base_config, out, root / "trials" / "_calibrate", args.runs,
                  ready_timeout=space.timeouts.ready, passes=args.passes,
                  env={TAG_ENV: command_tag(space.study, "calibrate")},  # a killed calibrate's engine is ended next time
                  stack=stack)
    return 0


#: Stack.calibration -> how `tune calibrate` runs it
CALIBRATIONS = {"surrogate": _calibrate_surrogate, "replays": _calibrate_replays, "steps": _calibrate_steps}


def _counter(args):
    """Token counter for ``tune trace``: --tokenizer (a SentencePiece .model file, else a Hugging Face
    folder or tokenizer.json), else the --study's stack's, else None (the word count)."""
    if args.tokenizer and args.study:
        raise ConfigError("--tokenizer or --study must be given, not both")
    if args.tokenizer:
        t = args.tokenizer
        return tokenizers.sentencepiece_counter(t) if t.suffix == ".model" else tokenizers.hf_counter(t)
    if args.study:
        root = find_root(args.root)
        space = load_space(args.study, root)
        return get_stack(space.backend).token_counter(root / space.base_config, space.backend_options())
    return None


def cmd_trace_stats(args) -> int:
    counter = _counter(args)
    with ReadProgress(args.file, not args.no_progress) as meter:
        stats = trace_stats(args.file, args.format, counter, meter)
    print(describe_trace(stats, bars=not args.no_histogram))
    return 0


def cmd_trace_convert(args) -> int:
    out = check_target(args.to, args.force, args.follow_symlinks, key="--to")   # a regular file or a new one
    tally, counter = Tally(), _counter(args)
    with ReadProgress(args.file, not args.no_progress) as meter:  # through a temporary file: an error leaves nothing
        rows = converted(args.file, args.format, counter, args.seed, tally, meter)
        write_chunks(out, (json.dumps(r) + "\n" for r in rows), args.force, args.follow_symlinks, key="--to")
    print(f"wrote {out}: {tally.kept} requests from {tally.describe()}")
    return 0


def _trace_parser(sub, epilog: str | None) -> None:
    verbs = sub.add_parser("trace", help="trace statistics and conversion (tune trace stats|convert FILE)") \
        .add_subparsers(dest="verb", required=True)

    def verb(name: str, func, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help, epilog=epilog,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("file", type=Path, help="the trace (any format tune reads)")
        p.add_argument("--format", default="auto", choices=format_names(), help="trace format (default: detected)")
        p.add_argument("--tokenizer", type=Path, help="count tokens with this SentencePiece .model file or "
                       "Hugging Face tokenizer (folder or tokenizer.json); default: words")
        p.add_argument("--study", help="count tokens with this study's stack's tokenizer")
        p.add_argument("--root", type=Path, help="project directory holding search_spaces/ (with --study)")
        p.add_argument("--no-progress", action="store_true", help="no progress display while the trace is read")
        p.set_defaults(func=func)
        return p

    stats = verb("stats", cmd_trace_stats, "requests, token length percentiles, arrival rate and burstiness, "
                 "prefix reuse, histograms")
    stats.add_argument("--no-histogram", action="store_true", help="figures only, no text histograms")
    conv = verb("convert", cmd_trace_convert, 'write the trace as this project\'s JSON lines '
                '({"prompt", "output_len", "timestamp"?})')
    conv.add_argument("--to", type=Path, required=True, help="output .jsonl file")
    conv.add_argument("--force", action="store_true", help="overwrite --to if it exists (a regular file only)")
    conv.add_argument("--follow-symlinks", action="store_true", help="--to may be a symlink: write its target")
    conv.add_argument("--seed", type=int, default=0, help="seed of synthesized prompts (length-only formats)")


def _help_root() -> Path | None:
    try:
        return find_root(None)
    except ConfigError:
        return None


def build_parser(full_help: bool = True) -> argparse.ArgumentParser:
    """``full_help``: the names and keys after the flags (read only when help is asked for)."""
    epilog = reference(_help_root()) if full_help else None
    ap = Parser(prog="tune", description="Tune an LLM serving stack by measuring it.", epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = ap.add_subparsers(dest="command")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        p.set_defaults(func=func)
        return p

    run = command("run", cmd_run, "run (or resume) a study (the default command)")
    run.add_argument("--n-trials", type=count(1), help="trials to run now, >= 1 (default: the space's n_trials)")
    run.add_argument("--device", type=count(0), help="accelerator device id for the stack")
    run.add_argument("--devices", help="one worker per device id, e.g. 0,1 (trials split between them)")
    run.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    run.add_argument("--parent", help=argparse.SUPPRESS)  # owner id of the `tune --devices` running this worker
    exp = command("export", cmd_export, "write the best configuration as YAML")
    exp.add_argument("--to", type=Path, help="output file (default: <base>_<study>_best.yaml beside the base config)")
    exp.add_argument("--force", action="store_true", help="overwrite an existing output file (never the base config)")
    exp.add_argument("--follow-symlinks", action="store_true", help="--to may be a symlink: write its target")
    fin = command("finalize", cmd_finalize, "re-run the top finalists and declare a winner only with confidence")
    fin.add_argument("--top-k", type=count(2), help="finalists (default: the space's finalists.top_k)")
    fin.add_argument("--repeats", type=count(2), help="fresh runs of each (default: finalists.repeats)")
    fin.add_argument("--confidence", type=between(0.5, 1.0), help="e.g. 0.95 (default: finalists.confidence)")
    fin.add_argument("--device", type=count(0), help="accelerator device id for the stack")
    dash = command("dashboard", cmd_dashboard, "start optuna-dashboard on 127.0.0.1 for the study")
    dash.add_argument("--port", type=port, default=0, help="port, 0..65535 (default 0: a free one)")
    rep = command("report", cmd_report, "write trials/<study>/report.html and results.csv")
    rep.add_argument("--out", type=Path, help="folder (default trials/<study>/)")
    command("bare-run", cmd_bare_run, "replay the trace with the engine stopped at each stage")
    prof = command("profile", cmd_profile, "static benchmark (LMDeploy profile_generation): concurrency x "
                   "(prompt, completion) tokens, closed loop")
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
    calib = command("calibrate", cmd_calibrate, "fit the simulator's latency profile to the embedded engine "
                    "(backend=vllm: the vLLM surrogate's step time, from one vLLM launch; backend=llm_serving: "
                    "the profile's decode host terms, from the steps its replays show along the space's diagonal)")
    calib.add_argument("--out", type=Path, help="profile YAML (default serving/sim/profiles/embedded.yaml; "
                       "backend=vllm: trials/<study>/vllm_surrogate.yaml; llm_serving: trials/<study>/sim_profile.yaml)")
    calib.add_argument("--runs", type=batch_pairs, default=cal.RUNS,
                       help="decode x prefill batch pairs, e.g. 1x1,4x2,16x4,32x8")
    calib.add_argument("--passes", type=count(1), default=1,
                       help="repeat the runs (alternate passes reversed) to average out a drifting CPU")
    calib.add_argument("--points", type=count(2), default=cal_replays.POINTS,
                       help="backend=llm_serving: configurations along the space's diagonal")
    calib.add_argument("--requests", type=count(1), help="backend=llm_serving: replay the study's first N requests "
                       "(default: all; a few hundred decode steps are enough)")
    calib.add_argument("--from", dest="refit", type=Path, metavar="DIR",
                       help=f"refit from the {cal.STEPS_FILE} files an earlier run kept under DIR, measuring nothing")
    _trace_parser(sub, epilog)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser(full_help=bool({"-h", "--help"} & set(argv)))
    commands = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]  # `tune --study S` means `tune run --study S`
    if argv[0] in commands and argv[0] != "trace":
        # a command's own parser, intermixed: key=value overrides before, between or after the flags
        # (argparse's plain parse takes the positionals once, and a later one is "unrecognized")
        args = commands[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
    else:
        args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with stop_signals_interrupt():  # TERM and HUP unwind like Ctrl-C: what we started is stopped
            return args.func(args)
    except ConfigError as err:  # bad input, found before anything was written: one line
        safe_print(f"tune: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        safe_print("tune: interrupted; the study is saved and resumes with the same command", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away; what was measured is stored
        silence_broken()
        return 141  # 128 + SIGPIPE, what a shell reports for a command whose pipe closed


if __name__ == "__main__":
    sys.exit(main())
