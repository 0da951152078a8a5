"""Write a trial's config: the base YAML with tuned keys set, comments and key order kept."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from serving.config.errors import ConfigError


def _yaml() -> YAML:
    y = YAML()  # round-trip mode keeps comments, order and flow style
    y.preserve_quotes = True
    y.width = 4096
    return y


def load_roundtrip(path: str | Path) -> CommentedMap:
    try:
        return _yaml().load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("base config file not found", path) from None


def dump_roundtrip(doc: CommentedMap) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()


def set_dotted(doc: CommentedMap, key: str, value: Any, path: str | Path | None = None) -> None:
    """Set ``a.b.c`` in place. The key must already exist in the base: a tuned key that the
    stack would not read is a mistake in the search space, not something to add silently."""
    node = doc
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"tuned key must exist in the base config; no section '{'.'.join(parts[:i + 1])}'",
                              path, key)
        node = node[part]
    leaf = parts[-1]
    if not isinstance(node, dict) or leaf not in node:
        raise ConfigError("tuned key must exist in the base config; it does not", path, key)
    old = node[leaf]
    if isinstance(old, list) and not isinstance(value, list):
        # llm-serving keeps batch sizes and seq lengths as lists; a tuned scalar is a one-entry list
        value = [value]
    if isinstance(value, list):
        seq = CommentedSeq(value)
        if isinstance(old, CommentedSeq) and old.fa.flow_style():
            seq.fa.set_flow_style()
        value = seq
    node[leaf] = value


def render(base: str | Path, params: dict[str, Any], out: str | Path | None = None) -> str:
    doc = load_roundtrip(base)
    for key, value in params.items():
        set_dotted(doc, key, value, base)
    text = dump_roundtrip(doc)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text
