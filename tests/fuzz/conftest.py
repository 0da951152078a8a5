"""The fault and fuzz suite's harness: run ``tune`` on bad input and check how it ends.

Every case must end with exit status 2 and one line on stderr (``tune...: error: ...``), no
traceback, nothing created or changed under the project (the tree before and after is
compared, file sizes and mtimes included) and no process left. ``tune`` runs in-process
(tuner.cli.main); the storage URLs a case names outside the project are checked apart.

Composing the space (hydra) is most of a case's cost, and most cases change a trace, a base
config, a storage URL or a flag, not the space: the real ``load_space`` runs once per distinct
input (space files' bytes, study, root, overrides) and a case gets a copy of what it returned.

Each distinct input is counted; tests/conftest.py prints the total at the end of the run.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.conftest import FUZZ_SEEN, ROOT, SMALL_MODEL

#: distinct inputs exercised, per kind (a set per kind, so repeated examples count once)
SEEN: dict[str, set[str]] = {}


def seen(kind: str, value) -> None:
    SEEN.setdefault(kind, set()).add(repr(value))


def pytest_sessionfinish(session):
    """Hand this process's inputs to tests/conftest.py's summary (under xdist, through the worker's output)."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["fuzz_seen"] = {k: sorted(v) for k, v in SEEN.items()}
    else:  # one process (or the xdist controller, whose SEEN is empty): merge, never replace
        for kind, values in SEEN.items():
            session.config.stash.setdefault(FUZZ_SEEN, {}).setdefault(kind, set()).update(values)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and mtime: a change shows as a difference."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@dataclass
class Result:
    rc: int
    out: str
    err: str
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    left: set[int] = field(default_factory=set)


@dataclass
class Sandbox:
    """A project root (search_spaces/, configs/, traces/, trials/) that the cases must not change."""
    root: Path
    spaces: dict = field(default_factory=dict)   # load_space's results by input

    def load_space(self, study: str, root: Path, overrides=()):
        from tuner.space.compose import load_space
        folder = Path(root) / "search_spaces"
        files = tuple(sorted((str(p), p.read_bytes()) for p in folder.rglob("*") if p.is_file()))
        key = (study, str(Path(root).resolve()), tuple(overrides), files)
        if key not in self.spaces:
            self.spaces[key] = load_space(study, root, overrides)   # an error is raised, never kept
        return self.spaces[key].model_copy(deep=True)

    def tune(self, *argv: str, outside: tuple[Path, ...] = ()) -> Result:
        from tuner import cli
        before, procs = tree(self.root), children()
        existed = {p: p.exists() for p in outside}
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as mp:
            mp.setattr(cli, "load_space", self.load_space)
            try:
                rc = cli.main(list(argv))
            except SystemExit as exc:  # argparse's own exit
                rc = exc.code if isinstance(exc.code, int) else 1
        after = tree(self.root)
        created = sorted(set(after) - set(before)) + [str(p) for p, e in existed.items() if not e and p.exists()]
        changed = sorted(k for k in before if k in after and before[k] != after[k] and not before[k][0])
        return Result(rc, out.getvalue(), err.getvalue(), created, changed, children() - procs)

    def write(self, rel: str, data: str | bytes) -> Path:
        p = self.root / rel
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
        return p


def assert_rejected(r: Result, *must_name: str) -> None:
    """Exit 2, one line on stderr naming what must (file/key), no traceback, nothing written, no process."""
    lines = r.err.strip().splitlines()
    assert r.rc == 2, f"exit {r.rc}, stderr: {r.err[-2000:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{r.err[-2000:]}"
    assert lines[0].startswith("tune") and ": error: " in lines[0], lines[0]
    assert "Traceback" not in r.err + r.out
    assert not r.created, f"created on disk: {r.created}"
    assert not r.changed, f"changed on disk: {r.changed}"
    assert not r.left, f"processes left: {r.left}"
    for text in must_name:
        assert text in lines[0], f"{text!r} not named in: {lines[0]}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Sandbox:
    """One project copy per test module (the cases write nothing, and each test checks that)."""
    root = tmp_path_factory.mktemp("fuzz-project")
    for name in ("search_spaces", "configs", "traces"):
        shutil.copytree(ROOT / name, root / name)
    (root / "trials").mkdir()
    from serving.config.render import render
    tiny = root / "configs/llama/tiny_llama_pa.yaml"
    render(tiny, SMALL_MODEL, tiny)
    return Sandbox(root)
