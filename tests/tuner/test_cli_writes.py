"""What `tune` writes replaces only a regular file, and a write that fails is one line, exit 2,
nothing partial left (tuner.runtime.writes)."""
import os
import stat
from pathlib import Path

import pytest

from serving.config.errors import ConfigError
from tests.tuner.finished_study import make_study
from tests.tuner.workload import fixtures
from tuner.cli import main
from tuner.runtime.writes import write_chunks, write_text



@pytest.fixture
def study(project_root):
    return make_study(project_root)

def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune: error:") and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("kind", ["character device", "fifo"])
def test_trace_convert_never_replaces_a_device_even_forced(tmp_path, capsys, kind):
    # `--to /dev/null --force` replaced the host's /dev/null: a device made here stands in for it
    src, dev = fixtures.sharegpt(tmp_path), tmp_path / "null"
    if kind == "fifo":
        os.mkfifo(dev)
    else:
        try:
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs CAP_MKNOD; the fifo case covers the same check")
    before = os.stat(dev)
    assert main(["trace", "convert", str(src), "--to", str(dev), "--force"]) == 2
    assert kind in one_line(capsys)
    after = os.stat(dev)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino


@pytest.mark.parametrize("where", ["folder", "dangling symlink", "symlink"])
def test_trace_convert_refuses_what_is_not_a_regular_file(tmp_path, capsys, where):
    src = fixtures.sharegpt(tmp_path)
    out = tmp_path / "out.jsonl"
    if where == "folder":
        out.mkdir()
    elif where == "dangling symlink":
        out.symlink_to(tmp_path / "no" / "such" / "file.jsonl")
    else:
        (tmp_path / "real.jsonl").write_text("keep\n")
        out.symlink_to(tmp_path / "real.jsonl")
    assert main(["trace", "convert", str(src), "--to", str(out), "--force"]) == 2
    assert str(out) in one_line(capsys)
    assert out.is_dir() if where == "folder" else out.is_symlink()
    if where == "symlink":
        assert (tmp_path / "real.jsonl").read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"out.jsonl", src.name, "real.jsonl", "no"}
                                                                 & {p.name for p in tmp_path.iterdir()})


@pytest.mark.parametrize("to", ["/dev/full", "/proc/tune-export.yaml", "/no/such/folder/x.yaml"])
def test_export_where_it_cannot_write_is_one_line(study, capsys, to):
    assert main(["export", "--root", str(study), "--to", to, "--force"]) == 2
    one_line(capsys)
    assert not Path(to).is_file() or Path(to).is_char_device()


def test_export_through_a_dangling_symlink_is_refused_and_leaves_it(study, capsys):
    link = study / "configs/llama/best.yaml"
    link.symlink_to(study / "gone" / "best.yaml")
    assert main(["export", "--root", str(study), "--to", str(link)]) == 2
    assert "symlink" in one_line(capsys)
    assert link.is_symlink() and not (study / "gone").exists()


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "t.jsonl"
    out.write_text("old\n")

    def chunks():
        yield "new 1\n"
        raise ConfigError("row 2 is bad", out)

    with pytest.raises(ConfigError, match="row 2"):
        write_chunks(out, chunks(), force=True)
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["t.jsonl"]


def test_a_write_keeps_the_replaced_files_mode_and_follows_a_symlink_only_when_asked(tmp_path):
    real = tmp_path / "real.yaml"
    real.write_text("a\n")
    real.chmod(0o640)
    write_text(real, "b\n", force=True)
    assert real.read_text() == "b\n" and stat.S_IMODE(real.stat().st_mode) == 0o640
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symlink"):
        write_text(link, "c\n", force=True)
    write_text(link, "c\n", force=True, follow_symlinks=True)
    assert link.is_symlink() and real.read_text() == "c\n"


@pytest.mark.parametrize("out", ["/dev/full", "/proc/tune-report", "/dev/null/report"])
def test_report_where_it_cannot_write_is_one_line(study, capsys, out):
    assert main(["report", "--root", str(study), "--out", out]) == 2
    assert out in one_line(capsys)
    assert not Path(out).is_dir()


def test_export_and_convert_follow_a_symlink_only_when_asked(study, tmp_path, capsys):
    real = study / "configs/llama/real.yaml"
    real.write_text("# old\n")
    link = study / "configs/llama/link.yaml"
    link.symlink_to(real)
    assert main(["export", "--root", str(study), "--to", str(link), "--force"]) == 2
    assert "symlink" in one_line(capsys) and real.read_text() == "# old\n"
    assert main(["export", "--root", str(study), "--to", str(link), "--force", "--follow-symlinks"]) == 0
    assert link.is_symlink() and "Exported by serving-tuner" in real.read_text()
    src, out, target = fixtures.sharegpt(tmp_path), tmp_path / "t.jsonl", tmp_path / "real.jsonl"
    out.symlink_to(target)   # dangling: followed, the target is made
    assert main(["trace", "convert", str(src), "--to", str(out), "--follow-symlinks"]) == 0
    assert out.is_symlink() and target.read_text().startswith('{"prompt"')
