import optuna
import pytest

from serving.config.errors import ConfigError
from tuner.compose import load_space
from tuner.space import parse_space


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
