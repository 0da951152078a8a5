"""What ``tune --help`` (and each command's help) lists after the flags: the names a user can put
in a search space or on the command line, read from where they are defined, so the help never
lists a name the code no longer takes."""
from __future__ import annotations

import textwrap
import typing
from pathlib import Path

from serving.stacks import stack_names
from tuner.space.metric_names import METRICS
from tuner.space.capacity import CAPACITY, FAILED, LATENCIES
from tuner.space.spec import LoadSpec, StudySpace
from tuner.workload.formats import format_names


def _choices(model, field: str) -> list[str]:
    return list(typing.get_args(model.model_fields[field].annotation))


def _keys(model) -> list[str]:
    return [k for k in model.model_fields if k != "stack_options"]


def _studies(root: Path | None) -> list[str]:
    """Each search space under ``root`` with the keys it tunes (its params), read as plain YAML."""
    import yaml
    out = []
    for path in sorted((root / "search_spaces").glob("*.yaml")) if root else []:
        try:
            params = (yaml.safe_load(path.read_text()) or {}).get("params") or {}
        except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError):
            continue
        keys, todo = [], [("", params)]
        while todo:
            prefix, tree = todo.pop()
            for k, v in (tree.items() if isinstance(tree, dict) else ()):
                if isinstance(v, dict):
                    (keys.append(f"params.{prefix}{k}") if "type" in v else todo.append((f"{prefix}{k}.", v)))
        out.append(f"{path.stem} ({', '.join(sorted(keys)) or 'no params'})")
    return out


def reference(root: Path | None = None) -> str:
    slo = [FAILED] + [f"{lat}_p{p}" for lat in LATENCIES for p in (50, 90, 99)]
    items = [
        ("backends", ", ".join(stack_names()) + " (the space's backend:; each has a <backend>: options section)"),
        ("trace formats", ", ".join(format_names()) + " (trace_format:, tune trace --format)"),
        ("arrival models", ", ".join(_choices(LoadSpec, "arrivals")) + " (load.arrivals)"),
        ("objectives and constraint metrics", ", ".join(METRICS)
         + ", or a usage probe's <probe>_mean/_peak/_samples (objectives[].name, constraints[].metric)"),
        ("SLO keys", ", ".join(slo) + f" (slo:, with the {CAPACITY} objective; seconds, {FAILED} a fraction; "
         "each a finite bound > 0, failed >= 0)"),
        ("samplers", ", ".join(_choices(StudySpace, "sampler"))),
        ("space keys", ", ".join(_keys(StudySpace))),
        ("load keys", ", ".join(f"load.{k}" for k in _keys(LoadSpec))),
    ]
    studies = _studies(root)
    if studies:
        items.append((f"studies in {root / 'search_spaces'} and the keys each tunes", "; ".join(studies)))
    lines = ["overrides are key=value (Hydra), before or after the flags, e.g. load.qps=4 n_trials=10", ""]
    for title, text in items:
        lines += textwrap.wrap(f"{title}: {text}", width=100, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)
