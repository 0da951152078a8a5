"""What a launched stack runs with, compared with the trial's config (DESIGN: read back, never assumed).

Each running stack reports readings (``RunningStack.read_back``): a key of the trial's config, the
value the stack runs with, and where that was read (vLLM's logged args, its engine config, its
/metrics; llm-serving's loaded YAML files; the embedded engine's /config). ``verify`` compares the
tuned keys with them: a key read back with another value fails the start with ``config_not_applied``
(the trial is never measured as if its config had been applied); a tuned key no reading covers is
listed as unverified. Both go to ``run_dir/applied.json``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import yaml

from serving.stacks import failures
from serving.stacks.base import LaunchError, Reading

__all__ = ["Reading", "expected_values", "differences", "verify"]




_MISSING = object()


def expected_values(config_path: Path, keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` (dotted) in the trial's rendered config file, as written there
    (a tuned batch size is the list ``[8]`` in llm-serving's YAML); keys it lacks are left out."""
    data = yaml.safe_load(Path(config_path).read_text()) or {}
    out: dict[str, Any] = {}
    for key in keys:
        node: Any = data
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            out[key] = node
    return out


def same(expected: Any, found: Any) -> bool:
    """Equal as the stack means it: a number read back as text ('128', '0.3', 'True', 'None'),
    a one-item list for a scalar (llm-serving's batch lists), floats to 1e-9."""
    if isinstance(expected, (list, tuple)) and isinstance(found, (list, tuple)):
        return len(expected) == len(found) and all(same(e, f) for e, f in zip(expected, found))
    if isinstance(expected, (list, tuple)) and len(expected) == 1:
        return same(expected[0], found)
    if isinstance(found, (list, tuple)) and len(found) == 1:
        return same(expected, found[0])
    if expected is None or found is None or isinstance(expected, bool) or isinstance(found, bool):
        return str(expected) == str(found)
    if isinstance(expected, (int, float)) or isinstance(found, (int, float)):
        try:
            e, f = float(expected), float(found)
        except (TypeError, ValueError):
            return False
        return e == f or math.isclose(e, f, rel_tol=1e-9)
    return str(expected) == str(found)


def differences(expected: dict[str, Any], readings: list[Reading]) -> tuple[list[str], list[str]]:
    """(one line per key read back with another value, the expected keys no reading covers); a key
    expected null is left to the stack and matches whatever it chose."""
    expected = {k: v for k, v in expected.items() if v is not None}   # null: left to the stack, any value is it
    diffs, covered = [], set()
    for r in readings:
        if r.key not in expected:
            continue
        covered.add(r.key)
        if not same(expected[r.key], r.value):
            diffs.append(f"{r.key}: expected {expected[r.key]!r}, found {r.value!r} ({r.source})")
    return diffs, [k for k in expected if k not in covered]


def verify(running, config_path: Path, keys: Iterable[str], run_dir: Path) -> dict[str, Any]:
    """Compare the tuned ``keys`` of the trial's config with what ``running`` reports; write
    run_dir/applied.json; on a difference stop the stack and raise LaunchError(config_not_applied)."""
    expected = expected_values(config_path, keys)
    error = None
    try:
        readings = running.read_back()
    except Exception as err:   # a source that cannot be read verifies nothing; it is said, not raised
        readings, error = [], f"{type(err).__name__}: {err}"
    except BaseException:
        running.stop()
        raise
    diffs, unverified = differences(expected, readings)
    record = {"expected": expected, "readings": [asdict(r) for r in readings if r.key in expected],
              "unverified": unverified, "differences": diffs, "read_error": error}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "applied.json").write_text(json.dumps(record, indent=1, default=repr))
    if diffs:
        tail = running.log_tail()
        running.stop()
        raise LaunchError(failures.CONFIG_NOT_APPLIED,
                          "the stack does not run with the trial's config: " + "; ".join(diffs), tail)
    return record
