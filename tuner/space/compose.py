"""Load search_spaces/<study>.yaml with Hydra-style ``key=value`` overrides (hydra-core compose API)."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from serving.config.errors import ConfigError
from serving.stacks import stack_names
from tuner.space.spec import StudySpace, parse_space


def find_root(start: Path | None = None) -> Path:
    """The project directory: the current one if it has search_spaces/, else this checkout."""
    cwd = (start or Path.cwd()).resolve()
    if (cwd / "search_spaces").is_dir():
        return cwd
    here = Path(__file__).resolve().parents[1]
    if (here / "search_spaces").is_dir():
        return here
    raise ConfigError(f"no search_spaces/ folder in {cwd} or {here}; run tune from the project directory "
                      "or pass --root")


def _stack_override(item: str) -> str:
    """``llm_serving.python=...`` sets a stack option whether or not the study file names that key:
    a stack's options are declared by its options model, which checks them after composing."""
    key = item.split("=", 1)[0]
    if "=" in item and key[:1] not in "+~" and key.split(".", 1)[0] in stack_names() and "." in key:
        return "++" + item
    return item


def load_space(study: str, root: Path, overrides: list[str] = ()) -> StudySpace:
    spaces = Path(root).resolve() / "search_spaces"   # hydra's compose wants an absolute folder
    path = spaces / f"{study}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in spaces.glob("*.yaml"))
        raise ConfigError(f"study file not found; known studies: {', '.join(known) or 'none'}", path)
    try:
        with initialize_config_dir(config_dir=str(spaces), version_base=None):
            cfg = compose(config_name=study, overrides=[_stack_override(o) for o in overrides])
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"override failed: {err}", path) from None
    return parse_space(OmegaConf.to_container(cfg, resolve=True), path)
