"""The one way ``tune`` writes a file a user named (an export, a converted trace, results.json).

A write replaces nothing but a regular file: a device (``/dev/null``), a folder, a fifo or a
symlink is refused before anything is written (a symlink is written through only when the
caller asks to follow it). The bytes go to a temporary file beside the target, which is renamed
over it once complete, so a failure mid-way (``/dev/full``, a read-only folder, a full disk)
leaves the old file, or nothing, behind. Every OSError is a ConfigError: one line, exit 2.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from serving.config.errors import ConfigError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_target(path: str | Path, force: bool = False, follow_symlinks: bool = False,
                 key: str | None = None) -> Path:
    """The file a write will replace or create, once it is known to be allowed; writes nothing.

    Refused: a symlink (dangling or not) unless ``follow_symlinks``, anything but a regular
    file, an existing file without ``force``, a folder that does not exist."""
    path = Path(path)
    if path.is_symlink():
        if not follow_symlinks:
            raise ConfigError("a regular file must be named, this is a symlink (name its target instead)", path, key)
        path = path.resolve()
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise ConfigError(f"a file that can be written must be named; {err.strerror}", path, key) from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"a regular file must be named, this is {_kind(st.st_mode)}", path, key)
        if not force:
            raise ConfigError("the file must not exist (or add --force to replace it); this one exists", path, key)
    if not path.parent.is_dir():
        raise ConfigError("the file's folder must exist", path.parent, key)
    return path


def write_chunks(path: str | Path, chunks: Iterable[str], force: bool = False, follow_symlinks: bool = False,
                 key: str | None = None) -> Path:
    """Write ``chunks`` (text) to ``path`` through a temporary file renamed over it at the end.

    An exception while the chunks are produced (a bad trace row) or written leaves nothing new:
    the temporary file is removed and the target is as it was."""
    path = check_target(path, force, follow_symlinks, key)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as err:
        raise ConfigError(f"a file that can be written must be named; {err.strerror}", path, key) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())   # a full disk shows here, before the rename, not after
        os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except OSError as err:
        raise ConfigError(f"a file that can be written must be named; writing it failed: {err.strerror or err}",
                          path, key) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str, force: bool = False, follow_symlinks: bool = False,
               key: str | None = None) -> Path:
    return write_chunks(path, [text], force, follow_symlinks, key)


def make_folder(path: str | Path, key: str | None = None) -> Path:
    """``path`` as a folder, made with its parents if missing; anything else there, or an OSError, is
    a ConfigError (one line)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"a folder must be named, this is {_kind(path.stat().st_mode)}", path, key) from None
    except OSError as err:
        raise ConfigError(f"a folder that can be made must be named; {err.strerror or err}", path, key) from None
    return path


def _mode(path: Path) -> int:
    """The mode the file ends with: the old file's, or what a plain open() would give (mkstemp's is 0600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
