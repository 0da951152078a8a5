"""Write the best trial's configuration: the base config with only the tuned keys changed, in the
stack's own format (llm-serving's YAML, vLLM's flat YAML, ...), next to the base config.

The values are the trial's own stored ``config`` (what was measured), never its Optuna params
mapped through today's choice lists. An existing file is kept unless ``force``; the study's
base config is never written over, even with ``force``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import optuna

from serving.config.errors import ConfigError
from serving.stacks import get_stack
from tuner.runtime.writes import check_target, write_text
from tuner.space.spec import StudySpace
from tuner.study.finalists import describe
from tuner.search.selection import best_trial, current_verdict, trial_config


def target(space: StudySpace, root: Path, to: Path | None, force: bool, follow_symlinks: bool = False) -> Path:
    """Where the export goes, once it is known not to write over what it must not (the base config,
    a device, a folder, a symlink, an existing file without ``force``)."""
    base = root / space.base_config
    out = Path(to) if to else base.with_name(f"{base.stem}_{space.study}_best.yaml")
    if out.exists() and base.exists() and os.path.samefile(out, base):
        raise ConfigError(f"--to must not name the study's base config ({space.base_config}): export writes a new "
                          "file beside it, and the base is what every trial was rendered from", out, "--to")
    return check_target(out, force, follow_symlinks, key="--to")


def export_best(study: optuna.Study, space: StudySpace, root: Path, to: Path | None = None,
                force: bool = False, follow_symlinks: bool = False) -> Path:
    out = target(space, root, to, force, follow_symlinks)
    try:
        trial = best_trial(study)
    except ValueError as err:
        raise ConfigError(str(err), key="study") from None
    config = trial_config(trial)
    values = ", ".join(f"{n}={v:.4g}" for n, v in zip(study.metric_names or [], trial.values))
    header = (f"# Exported by serving-tuner: study {space.study!r}, trial {trial.number} ({values}).\n"
              f"# Base: {space.base_config}; only the tuned keys differ.\n")
    verdict = current_verdict(study)
    if verdict is not None:  # why this trial: the finalists' fresh runs, as `tune finalize` printed them
        header += "".join(f"# {line}\n" for line in describe(verdict).splitlines())
    else:
        header += "# Not finalized: `tune finalize` re-runs the top trials to tell a winner from noise.\n"
    stack = get_stack(space.backend)
    with tempfile.TemporaryDirectory(prefix="tune-export-") as tmp:  # rendered aside, written whole below
        rendered = Path(tmp) / out.name
        stack.config_format.render(root / space.base_config, config, rendered)
        text = rendered.read_text()
    write_text(out, header + text, force, follow_symlinks, key="--to")
    try:   # the other files the trial ran with (llm-serving's model yaml), the export naming them
        extra = stack.export_files(out, space.backend_options(), force)
    except ConfigError:
        out.unlink()   # nothing half exported
        raise
    if extra:
        notes = "".join(f"# With {p.name}: a file the trial ran with, as it ran with it.\n" for p in extra)
        write_text(out, notes + out.read_text(), True, follow_symlinks, key="--to")
    return out
