"""load_space applies overrides with hydra's own grammar and apply step, without compose's config
search: the result must equal hydra's compose for every shipped space, and fail where compose fails."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from serving.config.errors import ConfigError
from tuner.space.compose import _composed, load_space

ROOT = Path(__file__).resolve().parents[3]
SPACES = ROOT / "search_spaces"
STUDIES = sorted(p.stem for p in SPACES.glob("*.yaml"))
OVERRIDES = [
    [],
    ["load.qps=7", "seed=3", "n_trials=2"],
    ["load.parameters={do_sample: true}", "+extra.deep.key=[1, 2]", "++load.parameters.top_p=0.9"],
    ["++load.max_tokens=512", "~constraints"],
    ["objectives=[{name: total_time, direction: minimize}]"],
]
BAD = [["no_such_key=1"], ["+load.qps=3"], ["~no_such_key"], ["load.qps=[1"], ["some/group=x"],
       ["load.parameters={do_sample: true, top_p: 0.9}"]]   # a new key inside a mapping needs ++


def hydra_compose(study: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(SPACES), version_base=None):
        return compose(config_name=study, overrides=overrides)


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: " ".join(o) or "none")
def test_the_same_as_hydra_compose(study, overrides):
    ours = _composed(SPACES, study, SPACES / f"{study}.yaml", overrides)
    assert OmegaConf.to_container(ours, resolve=True) == OmegaConf.to_container(hydra_compose(study, overrides),
                                                                                resolve=True)


@pytest.mark.parametrize("overrides", BAD, ids=lambda o: o[0])
def test_fails_where_hydra_compose_fails(overrides):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        hydra_compose("pa_batching", overrides)
    with pytest.raises(ConfigError, match="override failed"):
        load_space("pa_batching", ROOT, overrides)


def test_a_space_with_a_defaults_list_goes_through_compose(tmp_path):
    spaces = tmp_path / "search_spaces"
    spaces.mkdir()
    (spaces / "common.yaml").write_text("load: {qps: 3, duration: 2}\n")
    (spaces / "mine.yaml").write_text("defaults: [common, _self_]\nstudy: mine\n")
    cfg = _composed(spaces, "mine", spaces / "mine.yaml", ["load.qps=5"])
    assert OmegaConf.to_container(cfg) == {"load": {"qps": 5, "duration": 2}, "study": "mine"}
