"""Write a config that is the base YAML with only the tuned values changed: the one YAML editor.

ruamel.yaml (round-trip) finds where each tuned value sits; the value text is
replaced in place, so indentation, quoting, ``True`` spellings, key order and
comments of every other line stay byte for byte. The result is re-read and
checked to equal the base with exactly those keys changed.
"""
from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from serving.config.errors import ConfigError


def _locate(doc, key: str, path):
    node, parts = doc, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"tuned key must exist in the base config; no '{'.'.join(parts[:i + 1])}' there",
                              path, key)
        if i < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def _value_end(line: str, col: int, key: str, path) -> int:
    """Index just past the value that starts at ``col`` (flow collection, quoted or plain scalar)."""
    opener = line[col] if col < len(line) else ""
    if opener in "[{":
        depth, closer = 0, {"[": "]", "{": "}"}[opener]
        for i in range(col, len(line)):
            depth += line[i] == opener
            depth -= line[i] == closer
            if depth == 0:
                return i + 1
        raise ConfigError("a tuned value must fit on one line; this flow collection spans lines", path, key)
    if opener in "'\"":
        end = line.find(opener, col + 1)
        return end + 1 if end > 0 else len(line.rstrip("\n"))
    body = line.rstrip("\n")
    hash_at = body.find(" #", col)
    return len((body[:hash_at] if hash_at >= 0 else body).rstrip())


def _format(old: Any, value: Any, old_text: str) -> str:
    if isinstance(old, list) and not isinstance(value, list):
        value = [value]  # llm-serving keeps batch sizes and seq lengths as lists
    if isinstance(value, str) and old_text[:1] in "'\"":
        return old_text[0] + value + old_text[0]
    return yaml.safe_dump(value, default_flow_style=True, width=4096).strip().removesuffix("...").strip()


def _set(data: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        data = data[p]
    data[leaf] = [value] if isinstance(data[leaf], list) and not isinstance(value, list) else value


def render_text(text: str, params: dict[str, Any], path: str | Path | None = None) -> str:
    doc = YAML().load(text)
    lines = text.splitlines(keepends=True)
    for key, value in params.items():
        parent, leaf = _locate(doc, key, path)
        old = parent[leaf]
        if isinstance(old, dict) or (isinstance(old, list) and not old.fa.flow_style()):
            raise ConfigError("a tuned key must hold a scalar or a one-line [list] in the base config", path, key)
        row, col = parent.lc.value(leaf)
        line = lines[row]
        end = _value_end(line, col, key, path)
        new = _format(old, value, line[col:end])
        rest = line[end:]
        gap = len(rest) - len(rest.lstrip(" "))
        if rest.strip().startswith("#"):  # keep the comment in its column where there is room
            rest = " " * max(1, gap + (end - col) - len(new)) + rest.lstrip(" ")
        lines[row] = line[:col] + new + rest
    out = "".join(lines)
    expected = copy.deepcopy(yaml.safe_load(text))
    for key, value in params.items():
        _set(expected, key, value)
    if yaml.safe_load(out) != expected:
        raise ConfigError(f"rendering changed more than the tuned keys {sorted(params)}; report this", path)
    return out


def render(base: str | Path, params: dict[str, Any], out: str | Path | None = None, header: str = "") -> str:
    try:
        text = Path(base).read_text()
    except FileNotFoundError:
        raise ConfigError("base config file not found", base) from None
    result = header + render_text(text, params, base)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(result)
    return result


def set_keys(text: str, values: dict[str, Any], path: Path) -> str:
    """``text`` with dotted keys set: in place where every key exists (all other bytes kept, see
    render_text), else through a ruamel round trip that adds the missing ones (llm-serving's model YAML)."""
    try:
        return render_text(text, values, path)
    except ConfigError:
        pass
    y = YAML()
    y.preserve_quotes, y.width = True, 4096
    data = y.load(text)
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        if isinstance(value, list):
            node[leaf] = CommentedSeq(value)
            node[leaf].fa.set_flow_style()
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()
