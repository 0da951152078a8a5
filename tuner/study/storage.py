"""Study storages by URL: SQLite (default), any SQLAlchemy RDB URL (PostgreSQL for many hosts),
or ``journal:PATH`` for an Optuna journal file (several workers, no database server).

RDB storages get a heartbeat, so a trial whose worker died on another host is failed by the
next worker after the grace period (and re-queued by ``requeue``); on one host tuner.study.resume
notices a dead owner at once.

A bad URL is a ConfigError (one line, exit 2), found before anything is written where it can
be: ``check_url`` reads nothing and writes nothing. Commands that only read a study
(export, report, finalize, dashboard) open with ``create=False``, which never creates a
database or journal file; a folder made for a new storage is removed again if opening fails.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from tuner.trial_record import enqueued_attrs, record
import optuna
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from serving.config.errors import ConfigError

JOURNAL = "journal:"
HEARTBEAT_S = 10      # a live trial touches the storage this often
GRACE_S = 60          # a RUNNING trial silent this long belongs to a dead worker
KEY = "--storage"


def shown(url: str) -> str:
    """The URL as errors print it: without a password."""
    if url.startswith(JOURNAL):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _error(url: str, message: str) -> ConfigError:
    return ConfigError(f"{message} (storage {shown(url)})", key=KEY)


#: ``?mode=`` values of a SQLite URL (sqlite's own URI parameter); anything else in the query is refused,
#: since SQLAlchemy hands an unknown key to sqlite3.connect (a TypeError) or, for ``mode``, drops it
#: and writes to a storage the user asked to open read-only
SQLITE_MODES = ("ro", "rw", "rwc")
#: the PostgreSQL drivers SQLAlchemy knows, in the order a bare ``postgresql://`` takes them
PG_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))


def read_only(url: str) -> bool:
    """True for ``sqlite:///PATH?mode=ro``: opened read-only, refused where trials would be written."""
    if url.startswith(JOURNAL):
        return False
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    return parsed.get_backend_name() == "sqlite" and parsed.query.get("mode") == "ro"


def engine_url(url: str) -> str:
    """The URL SQLAlchemy opens: a bare ``postgresql://`` names the driver that is installed (SQLAlchemy
    2.1 maps it to psycopg 3, and the project installs psycopg2); ``sqlite:///PATH?mode=ro`` becomes
    sqlite's URI form, which is what makes sqlite open it read-only."""
    if url.startswith(JOURNAL):
        return url
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        import importlib.util
        driver = next((d for d, module in PG_DRIVERS if importlib.util.find_spec(module)), None)
        if driver is None:
            raise _error(url, "a PostgreSQL driver must be installed for a postgresql:// storage: "
                              "pip install psycopg2-binary (or psycopg[binary])")
        return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite" and parsed.query.get("mode"):
        from urllib.parse import quote
        # sqlite decodes its URI ('?', '#', '%' in a file name are escaped), and SQLAlchemy decodes the URL
        # once before: built as a URL object, rendering escapes it once more
        path = quote(str(Path(parsed.database).expanduser().absolute()), safe="/")
        return URL.create("sqlite", database=f"file:{path}", query={"mode": parsed.query["mode"], "uri": "true"}) \
            .render_as_string(hide_password=False)
    return url


def file_path(url: str) -> Path | None:
    """The file a journal or SQLite URL names (None for a database server); checks the URL's form."""
    if url.startswith(JOURNAL):
        rest = url[len(JOURNAL):]
        if not rest.strip():
            raise _error(url, "journal:PATH must name a file")
        return Path(rest).expanduser()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise _error(url, "a storage URL (sqlite:///PATH, postgresql://..., journal:PATH) must be given") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise _error(url, f"a known database kind must be named, got {parsed.get_backend_name()!r}") from None
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        raise _error(url, "sqlite:///PATH must name a database file (an in-memory study would lose every trial)")
    odd = sorted(set(parsed.query) - {"mode"})
    if odd or parsed.query.get("mode", "rwc") not in SQLITE_MODES:
        raise _error(url, f"a SQLite URL's query may hold only mode={'|'.join(SQLITE_MODES)}, "
                          f"found {'&'.join(f'{k}={v}' for k, v in parsed.query.items())}")
    return Path(parsed.database).expanduser()


def _nearest_dir(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_url(url: str, create: bool = True) -> None:
    """What can be known without opening: the URL's form, and for a file storage that the file
    exists (``create=False``) or can be made (``create=True``). Writes nothing."""
    path = file_path(url)
    if path is None:
        return
    if path.is_dir():
        raise _error(url, f"a file must be named, {path} is a folder")
    if not create:
        if not path.is_file():
            raise _error(url, f"an existing study storage must be named; {path} does not exist")
        return
    if read_only(url):
        raise _error(url, "a storage this command can write trials to must be named; ?mode=ro opens it "
                          "read-only (export, report and dashboard read such a storage)")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise _error(url, f"a writable file must be named; {path} is not writable")
        if url.startswith("sqlite") and not os.access(path.parent, os.W_OK | os.X_OK):
            # sqlite writes its journal beside the database: the first trial would fail to be stored
            raise _error(url, f"a writable folder must hold the storage (sqlite writes its journal there); "
                              f"{path.parent} is not writable")
        return
    parent = _nearest_dir(path)
    if not parent.is_dir():
        raise _error(url, f"a file under a folder must be named; {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _error(url, f"a writable folder must hold the storage; {parent} is not writable")


def open_storage(url: str | optuna.storages.BaseStorage, create: bool = True) -> optuna.storages.BaseStorage:
    if not isinstance(url, str):
        return url
    check_url(url, create)
    path = file_path(url)
    target = engine_url(url)
    made: list[Path] = []
    try:
        if path is not None and create:
            _make_parents(path, made)
        if url.startswith(JOURNAL):
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = {}
        if url.startswith("sqlite"):  # several local workers: wait for the write lock instead of failing
            engine_kwargs = {"connect_args": {"timeout": 60}}
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna 5, and what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(target, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                              grace_period=GRACE_S, heartbeat_stale_trial_callback=requeue)
    except (SQLAlchemyError, ImportError, OSError, ValueError, RuntimeError) as err:
        for d in reversed(made):  # a command that fails leaves nothing behind
            try:
                d.rmdir()
            except OSError:
                pass
        detail = " ".join(str(getattr(err, "orig", None) or err).split())[:300]
        raise _error(url, f"a storage that can be opened must be named; opening it failed: {detail}") from None


def _make_parents(path: Path, made: list[Path]) -> None:
    """Make the missing folders above ``path``, noting each in ``made`` (to remove them on failure)."""
    missing = []
    p = path.absolute().parent
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        made.append(d)


def load_study(url: str, name: str) -> optuna.Study:
    """An existing study, for the commands that read one; never creates a storage or a study."""
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        raise _error(url, f"an existing study must be named; there is no study {name!r} here "
                          f"(studies: {', '.join(names) or 'none'}; run `tune --study {name}` first)") from None


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a trial that died with its worker again (once), so the study loses no configuration.

    Also the storage's stale-trial callback: optuna's fail_stale_trials (run by optimize() and at
    resume) calls it for a trial whose worker stopped beating on any host."""
    if trial.params and record(trial).retry_of is None:
        study.enqueue_trial(trial.params, user_attrs=enqueued_attrs(retry_of=trial.number))


def dashboard_args(url: str) -> list[str]:
    """optuna-dashboard's arguments for the same storage."""
    if url.startswith(JOURNAL):
        return [str(Path(url[len(JOURNAL):]).expanduser()), "--storage-class", "JournalFileStorage"]
    return [engine_url(url)]


def default_storage(root: Path, study: str) -> str:
    """sqlite:///<root>/trials/<study>.db (its folder is made with the study, by open_storage)."""
    return f"sqlite:///{root / 'trials' / (study + '.db')}"
