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


def read_yaml(path: Path, missing: str = "file not found") -> object:
    """A YAML file's data; any way it cannot be read is one ConfigError naming the file (and the
    line and column of a syntax error), never a yaml or OS traceback."""
    import yaml
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(missing, path) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(f"valid YAML must hold; {err.problem or err} at {where}", path) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"valid YAML must hold; {err}", path) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"UTF-8 text must hold; byte {err.start} is not", path) from None
    except OSError as err:
        raise ConfigError(f"a readable file must hold; {err.strerror}", path) from None
