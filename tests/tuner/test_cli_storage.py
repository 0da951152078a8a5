"""Storage URLs as users write them: read-only SQLite, a read-only folder, a bare ``postgresql://``."""
import os
import subprocess
import uuid

import optuna
import pytest
from sqlalchemy.engine import make_url

from tests.tuner.finished_study import make_study
from tuner.cli import main
from tuner.study.storage import engine_url, open_storage



@pytest.fixture
def study(project_root):
    return make_study(project_root)

def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune: error:"), err
    return err[0]


def test_a_read_only_sqlite_storage_is_never_written(study, capsys):
    db = study / "trials" / "pa_batching.db"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    ro = f"sqlite:///{db}?mode=ro"
    assert main(["run", "--root", str(study), "--storage", ro, "--n-trials", "1", "--no-progress"]) == 2
    assert "mode=ro" in one_line(capsys)
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    # the reading commands open it read-only, and read it
    out = study / "configs/llama/ro.yaml"
    assert main(["export", "--root", str(study), "--storage", ro, "--to", str(out)]) == 0
    assert out.is_file() and (db.stat().st_mtime_ns, db.read_bytes()) == before


@pytest.mark.parametrize("query", ["mode=rox", "timeout=x", "foo=1"])
def test_an_unknown_sqlite_query_is_one_line(study, capsys, query):
    url = f"sqlite:///{study / 'trials' / 'pa_batching.db'}?{query}"
    assert main(["export", "--root", str(study), "--storage", url, "--to", str(study / "x.yaml")]) == 2
    assert query.split("=")[0] in one_line(capsys)
    assert not (study / "x.yaml").exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder holding a study's SQLite file that this process cannot write: chmod for a user,
    a read-only bind mount for root (which writes through any mode bits)."""
    src, folder = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    folder.mkdir()
    optuna.create_study(study_name="s", storage=f"sqlite:///{src / 's.db'}")
    if os.geteuid() != 0:
        os.chmod(src, 0o555)
        yield src
        os.chmod(src, 0o755)
        return
    ok = subprocess.run(["mount", "--bind", str(src), str(folder)], capture_output=True).returncode == 0
    if not ok or subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode:
        if ok:
            subprocess.run(["umount", str(folder)], check=True)
        pytest.skip("root without CAP_SYS_ADMIN: no read-only folder can be made here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_sqlite_storage_in_a_read_only_folder_is_one_line(project_root, read_only_folder, capsys):
    before = sorted(p.name for p in read_only_folder.iterdir())
    url = f"sqlite:///{read_only_folder / 's.db'}"
    assert main(["run", "--root", str(project_root), "--storage", url, "--n-trials", "1", "--no-progress",
                 "study=s"]) == 2
    assert "not writable" in one_line(capsys)
    assert sorted(p.name for p in read_only_folder.iterdir()) == before


def test_a_bare_postgresql_url_names_an_installed_driver():
    url = engine_url("postgresql://u:secret@127.0.0.1:5432/db")
    driver = make_url(url).get_dialect().driver
    __import__(driver)     # SQLAlchemy 2.1 takes psycopg (3) for a bare URL, and only psycopg2 is installed
    assert make_url(url).password == "secret" and make_url(url).database == "db"
    assert engine_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"


def _bare_pg_url() -> str | None:
    """The CI server's URL (.ci/run: TUNER_TEST_PG_URL) as a user writes it, without a driver."""
    url = os.environ.get("TUNER_TEST_PG_URL")
    if not url:
        return None
    bare = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        open_storage(bare, create=False)
        return bare
    except Exception:   # no server: skipped, as tests/tuner/study/test_workers.py's PostgreSQL test
        return None


@pytest.mark.skipif(_bare_pg_url() is None, reason="no PostgreSQL server (set TUNER_TEST_PG_URL; .ci/run starts one)")
def test_a_study_in_postgresql_as_users_write_the_url(project_root, capsys):
    url, name = _bare_pg_url(), f"pa_bare_{uuid.uuid4().hex[:8]}"
    try:
        assert main(["run", "--root", str(project_root), "--storage", url, "--n-trials", "1", "--no-progress",
                     "load.qps=20", "load.duration=0.5", "sampler=random", f"study={name}"]) == 0
        assert len(optuna.load_study(study_name=name, storage=open_storage(url)).trials) == 1
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_read_only_storage_whose_path_holds_uri_characters_is_the_same_file(tmp_path):
    folder = tmp_path / "a q#x"
    folder.mkdir()
    db = folder / "s%1.db"
    optuna.create_study(study_name="here", storage=f"sqlite:///{db}")
    assert optuna.get_all_study_names(open_storage(f"sqlite:///{db}?mode=ro", create=False)) == ["here"]
    assert sorted(p.name for p in folder.iterdir()) == ["s%1.db"]
