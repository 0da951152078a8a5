"""The command line as users type it: flags and overrides in any order, help that names what can be
used, --version, results.json, the export hint, and one-line errors from dashboard, calibrate and
the engine's own command line."""
import json
import shlex
import socket
import subprocess
import sys

import pytest

from tests.tuner.finished_study import make_study
from tuner.cli import main



@pytest.fixture
def study(project_root):
    return make_study(project_root)

def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in text, text
    return lines[0]


def test_overrides_before_between_and_after_flags_then_results_json_and_a_pasteable_export_hint(
        project_root, capsys, monkeypatch):
    storage = f"sqlite:///{project_root / 'trials' / 'elsewhere.db'}"   # not the default storage
    # an override holding blanks (a YAML mapping): printed bare it is three words to a shell
    assert main(["--study", "pa_batching", "load.qps=20", "--root", str(project_root), "--no-progress",
                 "load.duration=0.5", "--storage", storage, "--n-trials", "1",
                 "load.parameters={do_sample: false, return_full_text: true}"]) == 0
    out = capsys.readouterr().out
    hint = next(line for line in out.splitlines() if line.startswith("export it with: "))[len("export it with: "):]
    words = shlex.split(hint)
    assert words[:2] == ["tune", "export"] and ["--storage", storage] == words[words.index("--storage"):][:2]
    assert "load.parameters={do_sample: false, return_full_text: true}" in words
    target = project_root / "configs/llama/pasted.yaml"
    assert main([*words[1:], "--to", str(target)]) == 0   # pasted as printed: the same study, found
    assert target.is_file()

    written = next(line for line in out.splitlines() if line.startswith("wrote ") and line.endswith("results.json"))
    results = json.loads(open(written[len("wrote "):]).read())
    assert results["study"] == "pa_batching" and results["trials_total"] == 1 and len(results["trials"]) == 1
    best = results["best"]
    assert best["number"] == 0 and best["config"] and "total_time" in best["metrics"]
    assert set(best["values"]) == {"total_time", "utilisation"}
    assert results["conditions"]["load"]["qps"] == 20


def test_flags_after_overrides_parse_for_every_study_command():
    from tuner.cli import build_parser
    commands = next(a for a in build_parser(False)._actions if a.dest == "command").choices
    args = commands["export"].parse_intermixed_args(["a=1", "--force", "b=2", "--study", "s", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"] and args.force and args.study == "s"


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"], ["trace", "stats", "--help"]])
def test_help_lists_backends_formats_arrivals_metrics_slo_and_keys(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for word in ("llm_serving", "vllm", "sharegpt", "mooncake", "gamma", "poisson", "ttft_p99", "energy_j_per_token",
                 "capacity_rps", "SLO keys", "load.qps", "max_failed_fraction", "params.pa_config.num_blocks"):
        assert word in out, word


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("tune ")


@pytest.mark.parametrize("argv", [["calibrate", "--runs", "abc"], ["calibrate", "--runs", "4x0"],
                                  ["dashboard", "--port", "99999"]])
def test_bad_flag_values_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert argv[1] in one_line(capsys.readouterr().err)


def test_dashboard_on_a_taken_port_is_one_line(study, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert main(["dashboard", "--root", str(study), "--port", str(taken)]) == 2
    assert "taken" in one_line(capsys.readouterr().err)


def _engine(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serving.engine.server", *argv], capture_output=True, text=True,
                          timeout=120)


def test_engine_command_line_missing_config_and_taken_port_are_one_line(tmp_path, tiny_config):
    r = _engine("--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml" in one_line(r.stderr)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = _engine("--config", str(tiny_config), "--port", str(s.getsockname()[1]))
    assert r.returncode == 2 and "--port" in one_line(r.stderr)


def test_calibrate_on_a_stack_without_calibration_is_one_line(project_root, capsys):
    """backend=sim declares none (Stack.calibration): refused before anything runs or is written."""
    before = sorted(p for p in (project_root / "trials").rglob("*"))
    assert main(["calibrate", "--study", "pa_batching", "--root", str(project_root), "backend=sim"]) == 2
    assert "has no calibration" in one_line(capsys.readouterr().err)
    assert sorted(p for p in (project_root / "trials").rglob("*")) == before
