"""`tune profile`: LMDeploy's static benchmark, closed loop, against a launched stack."""
import csv
import math
import os

import pytest

from serving.config.errors import ConfigError
from serving.probes.memory import GroupMemoryProbe
from tuner.cli import main
from tuner.tools.profile import Cell, cell_row, make_cells, synth_prompt
from serving.workload import RequestRecord


def test_cells_pair_prompt_and_completion_for_each_concurrency():
    cells = make_cells([1, 4], [1, 128], [128, 8])
    assert cells == [Cell(1, 1, 128), Cell(1, 128, 8), Cell(4, 1, 128), Cell(4, 128, 8)]
    with pytest.raises(ConfigError, match="equal lengths"):
        make_cells([1], [1, 2], [3])
    with pytest.raises(ConfigError, match=">= 1"):
        make_cells([0], [1], [3])


def test_prompt_has_exactly_n_words():
    assert [len(synth_prompt(n).split()) for n in (1, 7, 300)] == [1, 7, 300]


def test_row_follows_lmdeploy_definitions():
    def r(i, sent, times, error=None):
        return RequestRecord(i, 4, len(times), 0.0, sent=sent, first_token=times[0], done=times[-1],
                             token_times=list(times), n_tokens=len(times), finish_reason="length", error=error)
    recs = [r(0, 0.0, [0.1, 0.2, 0.4]), r(1, 0.0, [0.3, 0.4, 0.5]), r(2, 0.5, [0.6], error="timeout: x")]
    row = cell_row(Cell(2, 4, 3), 1, recs, elapsed=2.0)
    assert (row["requests"], row["requests_ok"]) == (3, 2)
    assert row["first_token_latency_min_s"] == pytest.approx(0.1)
    assert row["first_token_latency_max_s"] == pytest.approx(0.3)
    assert row["first_token_latency_mean_s"] == pytest.approx(0.2)
    assert row["output_tokens_per_s"] == 3.0 and row["requests_per_s"] == 1.0  # 6 tokens, 2 requests, 2 s
    assert row["token_latency_p50_s"] == pytest.approx(0.1)  # gaps 0.1, 0.2, 0.1, 0.1; first token excluded
    assert row["token_latency_p99_s"] == pytest.approx(0.197)
    assert row["error"].startswith("1 failed")


def test_group_memory_probe_sums_rss_of_a_process_group():
    probe = GroupMemoryProbe([os.getpgid(0)])
    before = probe.sample()
    blob = bytearray(64 * 2**20)
    blob[::4096] = b"x" * len(blob[::4096])  # touch every page so it is resident
    assert probe.sample() > before + 32
    assert GroupMemoryProbe([]).sample() is None


def test_llm_serving_running_reports_a_list_of_process_groups(tmp_path):
    """The real class (not a fake): tune profile and resume read ``pgids`` as a list property."""
    from serving.stacks.llm_serving import LLMServingOptions, LLMServingRunning
    from serving.procs.process import ManagedProcess
    procs = {n: ManagedProcess(["sleep", "30"], tmp_path / f"{n}.log") for n in ("agent", "server")}
    running = LLMServingRunning(procs, "http://127.0.0.1:9", LLMServingOptions(accelerator="none"), 0, tmp_path)
    try:
        assert running.pgids == [procs["agent"].pgid, procs["server"].pgid]
        assert running.utilisation is None   # no accelerator: no busy figure (its host CPU share is host_cpu_mean)
    finally:
        running.stop()


def test_profile_on_the_embedded_stack_writes_csv(project_root, tiny_config, capsys):
    out = project_root / "prof.csv"
    rc = main(["profile", "--root", str(project_root), "--config", str(tiny_config), "-c", "1", "2",
               "-pt", "3", "-ct", "4", "-tr", "2", "-w", "0", "--csv", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["concurrency"], r["requests_ok"]) for r in rows] == [("1", "2"), ("2", "4")]
    for r in rows:
        assert r["error"] == "" and float(r["output_tokens_per_s"]) > 0 and float(r["peak_rss_mb"]) > 10
        assert 0 < float(r["first_token_latency_min_s"]) <= float(r["first_token_latency_max_s"])
        assert not math.isnan(float(r["token_latency_p99_s"]))
    assert "tok lat p50/p75/p95/p99 ms" in capsys.readouterr().out


def test_profile_refuses_the_simulator(project_root):
    from tuner.space.compose import load_space
    from tuner.tools.profile import profile
    space = load_space("pa_batching", project_root, ["backend=sim"])
    with pytest.raises(ConfigError, match="no HTTP endpoint"):
        profile(space, project_root, [Cell(1, 2, 2)], 1, project_root / "trials/p")
