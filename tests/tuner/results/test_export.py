"""`tune export` writes what was measured, and never over what it must not."""
import optuna
import pytest
import yaml

from tests.tuner.finished_study import DBS, make_study
from tuner.cli import main


@pytest.fixture
def study(project_root):
    """A finished study as `tune` leaves it: ordered choices stored as positions, the values in ``config``."""
    return make_study(project_root)


def export(root, *argv):
    return main(["export", "--root", str(root), *argv])


def test_export_writes_the_stored_config_after_the_choice_list_changed(study, capsys):
    out = study / "configs/llama/best.yaml"
    # position 6 of the new list is 4096: the trial measured 64, and 64 is what is exported
    assert export(study, "--to", str(out), f"params.{DBS}.choices=[64,128,256,512,1024,2048,4096]") == 0
    cfg = yaml.safe_load(out.read_text())
    assert cfg["model_config"]["decode_batch_size"] == [64]   # the base's list form is kept
    assert cfg["model_config"]["prefill_batch_size"] == [2] and cfg["pa_config"]["num_blocks"] == 512


def test_export_refuses_to_overwrite_unless_forced(study, capsys):
    out = study / "configs/llama/mine.yaml"
    out.write_text("# my hand-tuned file\n")
    assert export(study, "--to", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0] and str(out) in err[0]
    assert out.read_text() == "# my hand-tuned file\n"
    assert export(study, "--to", str(out), "--force") == 0
    assert yaml.safe_load(out.read_text())["model_config"]["decode_batch_size"] == [64]


def test_export_never_overwrites_its_base_config_even_forced(study, capsys):
    base = study / "configs/llama/tiny_llama_pa.yaml"
    before = base.read_bytes()
    for extra in ([], ["--force"]):
        assert export(study, "--to", str(base), *extra) == 2
        assert "base config" in capsys.readouterr().err
    link = study / "configs/llama/link.yaml"   # the same file by another name
    link.symlink_to(base)
    assert export(study, "--to", str(link), "--force") == 2
    assert base.read_bytes() == before


def test_export_default_path_then_refuses_the_second_time(study, capsys):
    assert export(study) == 0
    out = study / "configs/llama/tiny_llama_pa_pa_batching_best.yaml"
    first = out.read_bytes()
    assert export(study) == 2 and out.read_bytes() == first
    assert export(study, "--force") == 0


def test_export_of_a_study_without_a_feasible_trial_is_one_line(project_root, capsys):
    storage = f"sqlite:///{project_root / 'trials' / 'pa_batching.db'}"
    optuna.create_study(study_name="pa_batching", storage=storage, directions=["minimize", "maximize"])
    assert export(project_root) == 2
    assert "no feasible completed trial" in capsys.readouterr().err
    assert not (project_root / "configs/llama/tiny_llama_pa_pa_batching_best.yaml").exists()
