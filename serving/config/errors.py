"""One error type for bad configuration: what must hold, what was found, which file and key."""
from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    def __init__(self, message: str, path: str | Path | None = None, key: str | None = None):
        self.path, self.key, self.message = path, key, message
        where = ": ".join(str(p) for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


def from_validation_error(err, path: str | Path | None) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError listing every bad key."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")  # a validator's own message says what must hold
        if e["type"] == "missing":
            lines.append(f"{key}: required key missing")
        elif not key:   # a whole-model check: its message names the keys, the input is the whole file
            lines.append(msg)
        elif e["type"] == "value_error":  # a validator's message says what it found
            lines.append(f"{key}: {msg}")
        else:
            lines.append(f"{key}: {msg} (found {_short(e.get('input'))})")
    return ConfigError("; ".join(lines), path)


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
