"""Everything a command can check before its first trial, so bad input stops it at once.

A study runs for hours; a base config that does not load, a trace that does not parse or a
stack the host cannot start (no checkout, no interpreter, no npu-smi) must stop it before a
storage or a run folder is made, with one line naming the file or key, not as a FAIL trial
an hour in. The space itself was already checked when it was loaded (tuner.space.spec).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from serving.config.errors import ConfigError
from serving.stacks import get_stack
from tuner.space.spec import StudySpace


def check_inputs(space: StudySpace, root: Path, plan=None) -> None:
    """Raise ConfigError for the first input that cannot work: base config, trace/plan, the host."""
    stack = get_stack(space.backend)
    base = Path(root) / space.base_config
    if not base.is_file():
        raise ConfigError("the base config file must exist", base, "base_config")
    stack.config_format.load(base)  # ConfigError naming the file and key when it is not a valid config
    if plan is not None:
        plan()  # reads the trace and draws the schedule: ConfigError naming the trace file and line
    missing = stack.preflight(space.backend_options())
    if missing:
        raise ConfigError("; ".join(missing), key=space.backend)
    if space.prescreen and stack.surrogate is not None:   # e.g. a surrogate that has no profile yet
        opts = stack.surrogate_options(space.backend_options(), Path(root) / "trials" / space.study)
        missing = get_stack(stack.surrogate).preflight(space.stack_options.get(stack.surrogate, {}) if opts is None
                                                       else opts)
        if missing:
            raise ConfigError("; ".join(missing), key="prescreen")
    # the stack's own code on a config as trials render it (the space's first values): its imports,
    # the options it knows; in a scratch folder, so a failing command leaves nothing behind
    with tempfile.TemporaryDirectory(prefix="tune-preflight-") as tmp:
        config = Path(tmp) / f"config{base.suffix}"
        try:
            stack.config_format.render(base, first_values(space), config)
        except ConfigError:   # that one configuration is refused (a trial's own failure): the base as it is
            shutil.copyfile(base, config)
        broken = stack.dry_start(config, space.backend_options(), Path(tmp))
    if broken:
        raise ConfigError("; ".join(broken) + f" (checked on {space.base_config} with the space's first values)",
                          key=space.backend)


def first_values(space: StudySpace) -> dict[str, Any]:
    """One configuration of the space: each param's first choice or lower bound."""
    return {key: spec.choices[0] if spec.type == "categorical" else int(spec.low) if spec.type == "int" else spec.low
            for key, spec in space.param_specs().items()}
