"""Write the best trial's configuration: the base config with only the tuned keys changed, in the
stack's own format (llm-serving's YAML, vLLM's flat YAML, ...), next to the base config."""
from __future__ import annotations

from pathlib import Path

import optuna

from serving.stacks import get_stack
from tuner.study.finalists import describe
from tuner.study.selection import current_verdict
from tuner.space.spec import StudySpace
from tuner.study.selection import best_trial


def export_best(study: optuna.Study, space: StudySpace, root: Path, to: Path | None = None) -> Path:
    trial = best_trial(study)
    base = root / space.base_config
    out = to or base.with_name(f"{base.stem}_{space.study}_best.yaml")
    values = ", ".join(f"{n}={v:.4g}" for n, v in zip(study.metric_names or [], trial.values))
    header = (f"# Exported by serving-tuner: study {space.study!r}, trial {trial.number} ({values}).\n"
              f"# Base: {space.base_config}; only the tuned keys differ.\n")
    verdict = current_verdict(study)
    if verdict is not None:  # why this trial: the finalists' fresh runs, as `tune finalize` printed them
        header += "".join(f"# {line}\n" for line in describe(verdict).splitlines())
    else:
        header += "# Not finalized: `tune finalize` re-runs the top trials to tell a winner from noise.\n"
    get_stack(space.backend).config_format.render(base, space.config_of(trial.params), out)
    out.write_text(header + out.read_text())
    return out
