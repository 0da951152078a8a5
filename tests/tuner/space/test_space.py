import optuna
import pytest

from serving.config.errors import ConfigError
from tuner.space.compose import load_space
from tuner.space.spec import parse_space


def test_pa_batching_loads_with_four_params(project_root):
    space = load_space("pa_batching", project_root)
    assert set(space.param_specs()) == {"model_config.prefill_batch_size", "model_config.decode_batch_size",
                                        "pa_config.num_blocks", "pa_config.block_size"}
    assert [o.direction for o in space.objectives] == ["minimize", "maximize"]


def test_hydra_overrides_compose(project_root):
    space = load_space("pa_batching", project_root, ["load.qps=40", "backend=sim", "n_trials=3",
                                                      "params.pa_config.block_size.choices=[16,32]"])
    assert space.load.qps == 40 and space.backend == "sim" and space.n_trials == 3
    assert space.param_specs()["pa_config.block_size"].choices == [16, 32]


def test_bad_override_and_unknown_study_are_clear(project_root):
    with pytest.raises(ConfigError, match="override"):
        load_space("pa_batching", project_root, ["no_such_key=1"])
    with pytest.raises(ConfigError, match="known studies: pa_batching"):
        load_space("nope", project_root)


def test_typo_in_space_names_the_key(project_root):
    with pytest.raises(ConfigError) as err:
        load_space("pa_batching", project_root, ["+lod.qps=3"])
    assert "lod" in str(err.value) and "pa_batching.yaml" in str(err.value)


def test_param_rules():
    base = {"study": "s", "base_config": "b", "trace": "t", "load": {"qps": 1, "duration": 1},
            "objectives": [{"name": "total_time", "direction": "minimize"}]}
    with pytest.raises(ConfigError, match="low <= high"):
        parse_space(base | {"params": {"a": {"b": {"type": "int", "low": 5, "high": 1}}}})
    with pytest.raises(ConfigError, match="choices"):
        parse_space(base | {"params": {"a": {"type": "categorical"}}})
    space = parse_space(base | {"params": {"pa_config": {"num_blocks": {"type": "int", "low": 16, "high": 128, "log": True}}}})
    trial = optuna.create_study().ask()
    assert 16 <= space.suggest(trial)["pa_config.num_blocks"] <= 128
    assert space.param_specs()["pa_config.num_blocks"].grid() == [16, 32, 64, 128]


BASE = {"study": "s", "base_config": "b", "trace": "t", "load": {"qps": 1, "duration": 1},
        "objectives": [{"name": "total_time", "direction": "minimize"}]}


def test_increasing_numeric_choices_are_sampled_by_position():
    space = parse_space(BASE | {"params": {"m": {"dbs": {"type": "categorical", "choices": [1, 2, 4, 64]},
                                                 "mode": {"type": "categorical", "choices": ["a", "b"]},
                                                 "odd": {"type": "categorical", "choices": [8, 2, 4]}}}})
    specs = space.param_specs()
    assert specs["m.dbs"].is_ordered and not specs["m.mode"].is_ordered and not specs["m.odd"].is_ordered
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(12):
        trial = study.ask()
        config = space.suggest(trial)
        assert config == trial.user_attrs["config"] == space.config_of(trial.params)
        assert trial.params["m.dbs.index"] == [1, 2, 4, 64].index(config["m.dbs"])
        assert "m.dbs" not in trial.params and trial.params["m.mode"] == config["m.mode"]
        study.tell(trial, 1.0)
    assert {t.user_attrs["config"]["m.dbs"] for t in study.trials} == {1, 2, 4, 64}
    # a known configuration goes back in through the stored names (resume, retries)
    study.enqueue_trial(space.stored_params({"m.dbs": 64, "m.mode": "b", "m.odd": 2}))
    assert space.suggest(study.ask()) == {"m.dbs": 64, "m.mode": "b", "m.odd": 2}
    # trials of a study begun when the choices were plain labels still map to their values
    assert space.config_of({"m.dbs": 4, "m.mode": "a", "m.odd": 8}) == {"m.dbs": 4, "m.mode": "a", "m.odd": 8}


def test_ordered_flag_rules():
    forced = parse_space(BASE | {"params": {"q": {"type": "categorical", "choices": ["low", "mid", "high"],
                                                  "ordered": True}}})
    assert forced.param_specs()["q"].stored_name("q") == "q.index"
    off = parse_space(BASE | {"params": {"b": {"type": "categorical", "choices": [8, 16], "ordered": False}}})
    assert off.param_specs()["b"].stored_name("b") == "b"
    with pytest.raises(ConfigError, match="categorical params only"):
        parse_space(BASE | {"params": {"n": {"type": "int", "low": 1, "high": 4, "ordered": True}}})
    with pytest.raises(ConfigError, match="distinct"):
        parse_space(BASE | {"params": {"b": {"type": "categorical", "choices": [8, 8, 16]}}})
    with pytest.raises(ValueError, match="not one of the choices"):
        forced.stored_params({"q": "max"})


def test_default_sampler_is_gp_bo_with_one_random_start(project_root):
    from tests.conftest import ROOT
    from tuner.study.run import StudyRun
    space = load_space("pa_batching", ROOT, ["seed=0"])   # the shipped space (the test copy samples at random)
    sampler = StudyRun(space, project_root, "").make_sampler()
    assert isinstance(sampler.base, optuna.samplers.GPSampler) and sampler.base._n_startup_trials == 1
    tpe = StudyRun(load_space("pa_batching", project_root, ["sampler=tpe", "startup_trials=3"]), project_root, "")
    assert isinstance(tpe.make_sampler(), optuna.samplers.TPESampler) and tpe.make_sampler()._n_startup_trials == 3


def test_a_relative_root_loads(project_root, monkeypatch):
    monkeypatch.chdir(project_root.parent)
    assert load_space("pa_batching", type(project_root)(project_root.name)).study == "pa_batching"


def test_a_knob_the_platforms_stack_ignores_is_refused_at_load_with_why(project_root, capsys):
    """vLLM's CPU build sizes its KV pool from VLLM_CPU_KVCACHE_SPACE, so tuning gpu_memory_utilization there
    would measure one configuration under many names; on a GPU it is a real knob."""
    from tuner.cli import main
    knob = "+params.gpu_memory_utilization={type: float, low: 0.2, high: 0.5}"
    with pytest.raises(ConfigError, match=r"params.gpu_memory_utilization: a key the vllm stack applies on this "
                                          r"platform must be tuned, found one vLLM's CPU build ignores it"):
        load_space("vllm_batching", project_root, [knob])
    assert "gpu_memory_utilization" in load_space("vllm_batching", project_root, [knob, "vllm.device=gpu"]).param_specs()
    assert main(["--study", "vllm_batching", "--root", str(project_root), knob]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune: error: ") and "VLLM_CPU_KVCACHE_SPACE" in err[0]
    assert not (project_root / "trials" / "study.db").exists()
