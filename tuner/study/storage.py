"""Study storages by URL: SQLite (default), any SQLAlchemy RDB URL (PostgreSQL for many hosts),
or ``journal:PATH`` for an Optuna journal file (several workers, no database server).

RDB storages get a heartbeat, so a trial whose worker died on another host is failed by the
next worker after the grace period; on one host tuner.study.resume notices a dead owner at once.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

JOURNAL = "journal:"
HEARTBEAT_S = 10      # a live trial touches the storage this often
GRACE_S = 60          # a RUNNING trial silent this long belongs to a dead worker


def open_storage(url: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    if not isinstance(url, str):
        return url
    if url.startswith(JOURNAL):
        path = Path(url[len(JOURNAL):]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = {}
    if url.startswith("sqlite"):  # several local workers: wait for the write lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():  # heartbeats are "experimental" in optuna 5, and what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)


def dashboard_args(url: str) -> list[str]:
    """optuna-dashboard's arguments for the same storage."""
    if url.startswith(JOURNAL):
        return [str(Path(url[len(JOURNAL):]).expanduser()), "--storage-class", "JournalFileStorage"]
    return [url]


def default_storage(root: Path, study: str) -> str:
    (root / "trials").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'trials' / (study + '.db')}"
