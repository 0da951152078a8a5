"""Every `tune` command in the README and the guides is checked: it parses with the real command
line, its study and overrides compose with the real space loader, and the README's first study
runs as written (on the simulator, in a copy of the project, under a fresh storage)."""
from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from serving.config.errors import ConfigError
from tuner.cli import build_parser, main
from tuner.space.compose import load_space

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
#: stand-ins for what a reader fills in: their own interpreter, checkout and files
PLACEHOLDERS = {"$PWD": str(ROOT), "$(which python)": sys.executable}


def tune_commands(path: Path) -> list[str]:
    """The `tune ...` commands of a file's ```bash blocks, continuation lines joined, comments cut."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["tune"]:
                    found.append(part.strip())
    return found


COMMANDS = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in tune_commands(p)]


def argv_of(command: str) -> list[str]:
    for key, value in PLACEHOLDERS.items():
        command = command.replace(key, value)
    argv = shlex.split(command, comments=True)[1:]
    if argv and argv[0] not in {"run", "export", "finalize", "dashboard", "report", "bare-run", "profile",
                                "calibrate", "trace", "-h", "--help", "--version"}:
        argv = ["run", *argv]   # `tune --study S` is `tune run --study S`
    return argv


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 15 and any(f == "README.md" for f, _ in COMMANDS)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{f}:{c[:60]}" for f, c in COMMANDS])
def test_every_documented_command_parses_and_its_overrides_compose(where, command):
    try:
        args = build_parser().parse_args(argv_of(command))
    except SystemExit as stop:
        pytest.fail(f"{where}: `{command}` is refused by the command line (exit {stop.code})")
    if hasattr(args, "study") and hasattr(args, "overrides"):
        try:
            load_space(args.study, ROOT, args.overrides)
        except ConfigError as err:
            pytest.fail(f"{where}: `{command}`: {err}")


def test_the_readme_first_study_runs_as_written(tmp_path, monkeypatch, capsys):
    """Set-up study, export, report and the override example, in that order, on one storage: the
    sequence a new user follows (the override example must not be refused as a changed load)."""
    project = tmp_path / "project"
    for name in ("search_spaces", "configs", "traces"):
        shutil.copytree(ROOT / name, project / name)
    readme = [c for f, c in COMMANDS if f == "README.md" and not c.startswith("tune dashboard")]
    assert [shlex.split(c)[1] for c in readme][:3] == ["--study", "export", "report"]
    monkeypatch.chdir(project)
    for command in readme:
        argv = argv_of(command)
        # on the simulator, so the sequence costs seconds, not engine launches (export and report
        # name the same space as the run, or they refuse a study measured under another); one trial
        # a run: a second is the GP's, ~6 CPU-s of torch import and first fit that prove nothing here;
        # in this process (`tune` is tuner.cli:main), not four more interpreters importing the tuner
        argv.append("backend=sim")
        if argv[0] == "run":
            at = argv.index("--n-trials") if "--n-trials" in argv else len(argv)
            argv[at:] = ["--n-trials", "1", "--no-progress"] + argv[at + 2:]
        rc = main([*argv, "--root", str(project)])
        assert rc == 0, f"`{command}`: {capsys.readouterr().err[-2000:]}"
    assert list((project / "configs" / "llama").glob("*_pa_batching_best.yaml"))
    assert list((project / "trials").glob("pa_batching-*/report.html"))
