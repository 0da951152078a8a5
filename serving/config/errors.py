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
        found = e.get("input")
        line = f"{e['msg']} (found {found!r})" if e["type"] != "missing" else "required key missing"
        lines.append(f"{key}: {line}" if key else line)
    return ConfigError("; ".join(lines), path)
