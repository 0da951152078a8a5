"""Load search_spaces/<study>.yaml with Hydra-style ``key=value`` overrides (hydra-core compose API)."""
from __future__ import annotations

import functools
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl   # compose's own apply step
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from serving.config.errors import ConfigError, read_yaml
from serving.stacks import stack_names
from tuner.space.spec import StudySpace, check_study_name, parse_space


def find_root(start: Path | None = None) -> Path:
    """The project directory: ``start`` (--root), which must hold search_spaces/; without it the
    current directory if it has search_spaces/, else this checkout."""
    if start is not None:
        root = Path(start).expanduser().resolve()
        if not (root / "search_spaces").is_dir():
            raise ConfigError("--root must name a project directory holding search_spaces/; "
                              + ("it has none" if root.is_dir() else "no such directory"), root)
        return root
    cwd = Path.cwd().resolve()
    if (cwd / "search_spaces").is_dir():
        return cwd
    here = Path(__file__).resolve().parents[2]
    if (here / "search_spaces").is_dir():
        return here
    raise ConfigError(f"no search_spaces/ folder in {cwd} or {here}; run tune from the project directory "
                      "or pass --root")


def _read_yaml(path: Path) -> None:
    """The file as YAML, checked before hydra reads it: hydra lets yaml's own errors through."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"a search space must be a mapping of keys (study, params, load ...), "
                          f"found {type(data).__name__}", path)


def _stack_override(item: str) -> str:
    """``llm_serving.python=...`` sets a stack option whether or not the study file names that key:
    a stack's options are declared by its options model, which checks them after composing."""
    key = item.split("=", 1)[0]
    if "=" in item and key[:1] not in "+~" and key.split(".", 1)[0] in stack_names() and "." in key:
        return "++" + item
    return item


def load_space(study: str, root: Path, overrides: list[str] = ()) -> StudySpace:
    spaces = Path(root).resolve() / "search_spaces"   # hydra's compose wants an absolute folder
    try:
        check_study_name(study)
    except ValueError as err:
        raise ConfigError(f"--{err}", spaces) from None
    path = spaces / f"{study}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in spaces.glob("*.yaml"))
        raise ConfigError(f"study file not found; known studies: {', '.join(known) or 'none'}", path)
    _read_yaml(path)
    items = [_stack_override(o) for o in overrides]
    try:
        data = OmegaConf.to_container(_composed(spaces, study, path, items), resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"override failed: {' '.join(str(err).split())}", path) from None
    return parse_space(data, path)


def _composed(spaces: Path, study: str, path: Path, overrides: list[str]):
    """The study file with the overrides applied as hydra's compose applies them (its override grammar
    and its apply step, on the file in struct mode). A study file is one flat file, so compose's
    config search (its own hydra/ groups: ~8 YAML files read per load, 0.3-0.5 s) is skipped unless
    the file has a defaults list, which only compose resolves."""
    cfg = OmegaConf.load(path)      # as hydra's file source reads it
    if "defaults" in cfg:
        with initialize_config_dir(config_dir=str(spaces), version_base=None):
            return compose(config_name=study, overrides=overrides)
    OmegaConf.set_struct(cfg, True)
    ConfigLoaderImpl._apply_overrides_to_config(_parser().parse_overrides(overrides), cfg)
    return cfg


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()
