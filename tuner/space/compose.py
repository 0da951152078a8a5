"""Load search_spaces/<study>.yaml with Hydra-style ``key=value`` overrides (hydra-core compose API)."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
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
    try:
        with initialize_config_dir(config_dir=str(spaces), version_base=None):
            cfg = compose(config_name=study, overrides=[_stack_override(o) for o in overrides])
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"override failed: {' '.join(str(err).split())}", path) from None
    return parse_space(data, path)
