"""A study's artifacts belong to that study: keyed by its identity in its storage, and a study
refuses trials measured under another load, trace or stack."""
import json
from pathlib import Path

import optuna

from tuner.cli import main

SIM = ["--no-progress", "backend=sim", "load.qps=20", "load.duration=1", "sampler=random", "seed=3"]


def tune(root: Path, storage: str, *extra: str, n: int = 1) -> int:
    return main(["run", "--root", str(root), "--storage", storage, "--n-trials", str(n), *SIM, *extra])


def trials(storage: str, name: str = "pa_batching") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def test_the_same_study_name_in_two_storages_keeps_two_sets_of_files(project_root):
    a, b = (f"sqlite:///{project_root / 'trials' / n}" for n in ("a.db", "b.db"))
    assert tune(project_root, a) == 0
    assert tune(project_root, b, "params.model_config.decode_batch_size.choices=[2,4]") == 0
    [ta], [tb] = trials(a), trials(b)
    da, db = Path(ta.user_attrs["run_dir"]), Path(tb.user_attrs["run_dir"])
    assert ta.number == tb.number == 0 and da != db          # trial 0 of each: two folders
    assert da.parent.name.startswith("pa_batching-") and db.parent.name.startswith("pa_batching-")
    for t, d in ((ta, da), (tb, db)):   # each folder holds its own study's measurement
        outcome = json.loads((d / "outcome.json").read_text())
        assert outcome["config"] == t.user_attrs["config"]
        assert outcome["metrics"]["total_time"] == t.user_attrs["total_time"]
    assert tb.user_attrs["config"]["model_config.decode_batch_size"] in (2, 4)


def test_a_study_refuses_another_load_and_says_what_differs(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    assert tune(project_root, storage) == 0
    capsys.readouterr()
    assert tune(project_root, storage, "load.duration=2") == 2       # 20 requests, not 40, in this study
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "load" in err[0] and "duration" in err[0] and "study=pa_batching_2" in err[0]
    assert len(trials(storage)) == 1                                  # nothing was measured under it
    assert tune(project_root, storage, "load.duration=2", "study=pa_batching_2") == 0   # the way out it names
    assert len(trials(storage, "pa_batching_2")) == 1


def test_a_study_refuses_another_trace_backend_or_base_config(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    assert tune(project_root, storage) == 0
    trace = project_root / "traces/alpaca_like_1500.jsonl"
    lines = trace.read_text().splitlines(keepends=True)
    (project_root / "traces/other.jsonl").write_text("".join(lines[1:] + lines[:1]))  # same size, other content
    base = project_root / "configs/llama/tiny_llama_pa.yaml"
    (project_root / "configs/llama/other.yaml").write_text(base.read_text() + "\n# edited\n")
    for override, named in (("trace=traces/other.jsonl", "trace"), ("backend=embedded", "backend"),
                            ("base_config=configs/llama/other.yaml", "base_config"),
                            ("objectives=[{name: total_time, direction: minimize}]", "objectives")):
        capsys.readouterr()
        assert tune(project_root, storage, override) == 2, override
        assert named in capsys.readouterr().err
    assert len(trials(storage)) == 1


def test_a_study_refuses_its_trace_read_as_another_format_but_not_the_same_one_named(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    assert tune(project_root, storage) == 0                          # auto: this project's JSON lines
    assert tune(project_root, storage, "trace_format=jsonl") == 0    # the same reading, named
    capsys.readouterr()
    assert tune(project_root, storage, "trace_format=vllm") == 2     # output_tokens absent: 256 each
    err = capsys.readouterr().err
    assert "trace_format was jsonl and is now vllm" in err
    assert len(trials(storage)) == 2


def test_readers_use_the_run_dir_each_trial_stored(project_root):
    """The report finds requests.csv through each trial's run_dir, wherever the study's folder is."""
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    assert tune(project_root, storage, n=2) == 0
    assert main(["report", "--root", str(project_root), "--storage", storage]) == 0
    study = optuna.load_study(study_name="pa_batching", storage=storage)
    folder = Path(study.trials[0].user_attrs["run_dir"]).parent
    assert folder.name == f"pa_batching-{study.user_attrs['uid'][:8]}"
    assert "No per-request records found" not in (folder / "report.html").read_text()


def _as_before_round_gaps(storage: str) -> None:
    """Make the stored fingerprint one written before load.round_gaps existed."""
    study = optuna.load_study(study_name="pa_batching", storage=storage)
    fp = study.user_attrs["fingerprint"]
    del fp["load"]["round_gaps"]
    study.set_user_attr("fingerprint", fp)


def test_a_poisson_study_from_before_round_gaps_was_measured_with_rounded_gaps(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    assert tune(project_root, storage) == 0
    _as_before_round_gaps(storage)
    capsys.readouterr()
    assert tune(project_root, storage) == 2             # its trials had performance_serving's gaps
    err = capsys.readouterr().err
    assert "'round_gaps': True" in err and "'round_gaps': False" in err
    assert tune(project_root, storage, "load.round_gaps=true") == 0
    assert len(trials(storage)) == 2


def test_a_gamma_study_from_before_round_gaps_goes_on(project_root):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    assert tune(project_root, storage, "load.arrivals=gamma", "load.cv=2") == 0
    _as_before_round_gaps(storage)
    assert tune(project_root, storage, "load.arrivals=gamma", "load.cv=2") == 0
