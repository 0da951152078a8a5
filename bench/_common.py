"""Shared bits of the bench scripts: project import path, percentiles, aligned tables."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def pct(values, p: float) -> float:
    """p-th percentile (linear), NaN for no values; numpy-free so the client loop stays lean."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = (len(vals) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def median(values) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def table(head: list[str], rows: list[list]) -> None:
    cells = [[str(x) for x in head]] + [[f"{x:.3g}" if isinstance(x, float) else str(x) for x in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for r in cells:
        print("  ".join(x.rjust(w) for x, w in zip(r, widths)))


class _Tee:
    """Writes to the terminal and to the result file alike."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()

    def isatty(self):  # progress bars and colour follow the terminal, not the file
        return self.streams[0].isatty()


def run_recorded(name: str, main) -> int:
    """Runs a bench's main() with its output also kept in bench/results/<name>-<UTC time>.txt.

    A figure quoted anywhere comes from such a file: it names the command, the commit and the
    load average before and after the run. TUNER_BENCH_RESULTS=DIR writes elsewhere, '-' nowhere
    (the smoke tests)."""
    import datetime
    import os
    import subprocess

    where = os.environ.get("TUNER_BENCH_RESULTS", str(ROOT / "bench" / "results"))
    if where == "-" or {"-h", "--help"} & set(sys.argv[1:]):   # a usage text measures nothing
        return _exit_code(main)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    Path(where).mkdir(parents=True, exist_ok=True)
    path = Path(where) / f"{name}-{stamp}.txt"
    with open(path, "w") as out:
        out.write(f"# {' '.join(['python', *sys.argv])}\n# commit {commit}{' (modified)' if dirty else ''}, "
                  f"{stamp}, load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
        real = sys.stdout
        sys.stdout = _Tee(real, out)
        try:
            rc = _exit_code(main)
        finally:
            sys.stdout = real
            out.write(f"# load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    if rc == 2:   # bad input: refused before anything was measured, so nothing is kept
        path.unlink()
        return rc
    print(f"(kept in {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
    return rc


def _exit_code(main) -> int:
    """main()'s status, argparse's refusals (SystemExit 2) included, so a refused run keeps no file; a
    SystemExit's code read as Python reads it (None: 0, a message: 1)."""
    try:
        return main() or 0
    except SystemExit as stop:
        return 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
