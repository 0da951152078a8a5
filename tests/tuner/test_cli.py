"""`tune` end to end on the embedded stack: a small study, then export."""
import optuna
import yaml

from tuner.cli import main


def test_study_runs_resumes_and_exports_only_tuned_keys(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 's.db'}"
    args = ["--study", "pa_batching", "--root", str(project_root), "--storage", storage, "--no-progress",
            "load.qps=20", "load.duration=1", "seed=1"]
    assert main([*args, "--n-trials", "2"]) == 0
    assert main([*args, "--n-trials", "1"]) == 0          # same command resumes the same study
    study = optuna.load_study(study_name="pa_batching", storage=storage)
    assert len(study.trials) == 3
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done, [t.user_attrs.get("fail_detail") for t in study.trials]
    assert {"total_time", "utilisation", "ttft_p99", "tpot_p50", "requests_failed"} <= set(done[0].user_attrs)

    out = project_root / "configs/llama/best.yaml"
    export = ["export", "--study", "pa_batching", "--root", str(project_root), "--storage", storage, "--to", str(out)]
    assert main(export) == 2   # the space as shipped is not the one measured (load.qps=20 ...): refused
    assert "measured under" in capsys.readouterr().err and not out.exists()
    assert main([*export, "load.qps=20", "load.duration=1", "seed=1"]) == 0
    base = yaml.safe_load((project_root / "configs/llama/tiny_llama_pa.yaml").read_text())
    best = yaml.safe_load(out.read_text())
    diff = {f"{s}.{k}" for s in base for k in (base[s] or {}) if base[s][k] != best[s][k]}
    assert diff <= {"model_config.prefill_batch_size", "model_config.decode_batch_size",
                    "pa_config.num_blocks", "pa_config.block_size"}
    assert set(base) == set(best)
    assert "# Not finalized: `tune finalize`" in out.read_text()


def test_config_error_exits_2_with_the_key(project_root, capsys):
    assert main(["--study", "pa_batching", "--root", str(project_root), "load.qps=-1"]) == 2
    err = capsys.readouterr().err
    assert "load.qps" in err and "pa_batching.yaml" in err
