import pytest

from tuner.tools.bare_run import bare_run
from tuner.space.compose import load_space


def test_bare_run_table_has_each_stage(project_root, capsys):
    space = load_space("pa_batching", project_root, ["load.qps=20", "load.duration=1"])
    rows = bare_run(space, project_root, {"model_config.decode_batch_size": 8})
    assert [r["stage"] for r in rows] == ["http", "scheduler", "model"]
    assert all(r["failed"] is None and r["total_time"] > 0 for r in rows)
    # only the model level keeps the engine busy
    assert rows[0]["busy_pct"] < 5 and rows[2]["busy_pct"] > rows[1]["busy_pct"]
    out = capsys.readouterr().out
    assert "Exec Time" in out and "real model forward" in out
    # the run folders are the study's, and said where (never an unannounced temporary folder)
    kept = list((project_root / "trials" / "pa_batching" / "bare-run").glob("*/level3"))
    assert len(kept) == 1 and f"under {kept[0].parent}" in out


def test_bare_run_needs_a_stack_with_stages(project_root):
    space = load_space("pa_batching", project_root, ["backend=sim"])
    with pytest.raises(ValueError, match="backend .sim. has none"):
        bare_run(space, project_root)
