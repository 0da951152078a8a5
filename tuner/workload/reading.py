"""A progress display for reading a trace: shown once reading has taken a second (a 100k-record
trace takes several), on stderr, through rich; ``--no-progress`` turns it off."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

#: the clock is read once every this many records (a record costs microseconds)
CHECK_EVERY = 64


class ReadProgress:
    """``meter()`` once a record read; a context manager that ends the display."""

    def __init__(self, path: str | Path, show: bool = True, after: float = 1.0, console: Console | None = None):
        self.path, self.show, self.after = Path(path), show, after
        self.console = console
        self.n, self.t0 = 0, time.monotonic()
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> "ReadProgress":
        self.t0 = time.monotonic()
        return self

    def __call__(self) -> None:
        self.n += 1
        if self.n % CHECK_EVERY or not self.show:
            return
        if self._bar is None:
            if time.monotonic() - self.t0 < self.after:
                return
            self._bar = Progress(SpinnerColumn(), TextColumn(f"reading {self.path.name}"),
                                 TextColumn("{task.completed:,} records"), TimeElapsedColumn(),
                                 console=self.console or Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("read", total=None)
        self._bar.update(self._task, completed=self.n)

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
