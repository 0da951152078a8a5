"""Everything a command can check before its first trial, so bad input stops it at once.

A study runs for hours; a base config that does not load, a trace that does not parse or a
stack the host cannot start (no checkout, no interpreter, no npu-smi) must stop it before a
storage or a run folder is made, with one line naming the file or key, not as a FAIL trial
an hour in. The space itself was already checked when it was loaded (tuner.space.spec).
"""
from __future__ import annotations

from pathlib import Path

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
