"""Bad storage URLs (malformed, unknown kind, unreachable, unwritable, in memory) and commands that
read a study that does not exist: one line, exit 2, and no database or journal file made."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import assert_rejected, seen

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
READERS = ("export", "report", "finalize", "dashboard")
name = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)


def bad_urls(root: Path) -> st.SearchStrategy:
    return st.one_of(
        name.map(lambda n: f"{n}zz://somewhere/{n}"),                              # no such database kind
        st.text(alphabet="abc /:%?#", max_size=20).filter(lambda t: "://" not in t and not t.startswith("journal:")),
        st.sampled_from(["sqlite://", "sqlite:///:memory:", "journal:", "sqlite:///"]),   # in memory / no file
        name.map(lambda n: f"sqlite:///{root / 'configs'}"),                      # a folder, not a file
        name.map(lambda n: f"sqlite:////proc/{n}/study.db"),                      # a folder that cannot be made
        name.map(lambda n: f"journal:/proc/{n}/study.log"),
        name.map(lambda n: f"sqlite:///{root / 'configs/llama/tiny_llama_pa.yaml'}/{n}.db"),  # under a file
        st.tuples(st.sampled_from(["postgresql", "mysql"]), name).map(           # no driver or no server
            lambda t: f"{t[0]}://user:secret@127.0.0.1:1/{t[1]}"),
    )


def outside(url: str) -> tuple[Path, ...]:
    """Paths a URL names outside the project (they must not be created either)."""
    if url.startswith("journal:") and len(url) > len("journal:"):
        return (Path(url[len("journal:"):]),)
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return (Path(url[len("sqlite:///"):]),)
    return ()


@FUZZ
@given(data=st.data())
def test_a_bad_storage_url_stops_run_before_anything_starts(sandbox, data):
    url = data.draw(bad_urls(sandbox.root), label="url")
    seen("storage url (run)", url)
    r = sandbox.tune("run", "--root", str(sandbox.root), "--storage", url, "--n-trials", "1", "--no-progress",
                     "load.duration=1", outside=outside(url))
    assert_rejected(r, "--storage")
    assert "secret" not in r.err   # a password in the URL is never printed


@FUZZ
@given(command=st.sampled_from(READERS), db=name, journal=st.booleans())
def test_reading_a_study_that_does_not_exist_creates_nothing(sandbox, command, db, journal):
    path = sandbox.root / "trials" / (db + (".log" if journal else ".db"))
    url = f"journal:{path}" if journal else f"sqlite:///{path}"
    seen("storage (missing study)", (command, url))
    r = sandbox.tune(command, "--root", str(sandbox.root), "--storage", url)
    assert_rejected(r, "--storage", "does not exist")
    assert not path.exists()


def test_a_storage_without_that_study_names_the_ones_it_holds(sandbox, tmp_path):
    import optuna
    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="someone_else", storage=url)
    for command in READERS:
        seen("storage (missing study)", (command, "other.db"))
        r = sandbox.tune(command, "--root", str(sandbox.root), "--storage", url)
        assert_rejected(r, "no study 'pa_batching'", "someone_else")


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    """A database holding the study, made once (optuna's schema costs ~0.2 s an example); each example copies it."""
    import optuna
    db = tmp_path_factory.mktemp("template") / "s.db"
    optuna.create_study(study_name="pa_batching", storage=f"sqlite:///{db}", directions=["minimize", "maximize"])
    return db


@FUZZ
@given(query=st.one_of(
    st.just("mode=ro"),                                                          # read-only: no trial can be stored
    st.tuples(name, st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True)).filter(lambda t: t[0] != "mode")
    .map(lambda t: f"{t[0]}={t[1]}"),                                            # a key sqlite3.connect does not take
    st.from_regex(r"mode=[a-z]{1,4}", fullmatch=True).filter(lambda q: q not in ("mode=ro", "mode=rw", "mode=rwc"))))
def test_a_sqlite_query_that_would_lose_or_misplace_trials_stops_run(sandbox, tmp_path_factory, study_db, query):
    folder = tmp_path_factory.mktemp("ro")
    db = Path(shutil.copy(study_db, folder / "s.db"))
    before = db.read_bytes()
    url = f"sqlite:///{db}?{query}"
    seen("storage url (query)", query)
    r = sandbox.tune("run", "--root", str(sandbox.root), "--storage", url, "--n-trials", "1", "--no-progress")
    assert_rejected(r, "--storage", query.split("=")[0])
    assert db.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["s.db"]
