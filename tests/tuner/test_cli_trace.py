"""tune trace stats / convert through the CLI entry point."""
import json

import pytest

from tests.conftest import ROOT
from tests.tuner.workload import fixtures
from tuner.cli import main
from tuner.space.spec import LoadSpec
from tuner.workload.plan import build_plan
from tuner.workload.trace import load_trace, requests

LLAMA2 = ROOT.parent / "shared" / "thirdparty" / "mindformers" / "tests" / "utils" / "llama2_tokenizer" / "tokenizer.model"


@pytest.mark.parametrize("name", list(fixtures.ALL))
def test_stats_reads_every_format(tmp_path, capsys, name):
    path = fixtures.ALL[name](tmp_path)
    assert main(["trace", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{name} format" in out and "prompt tokens   p50" in out and "output tokens" in out


def test_stats_figures_of_a_mooncake_trace(tmp_path, capsys):
    assert main(["trace", "stats", str(fixtures.mooncake(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "requests        3" in out and "2 req/s over 1 s" in out
    assert "38.5% of prompt tokens in 512-token hash_ids blocks" in out     # 512 of 700 + 600 + 30
    assert "arrivals over time" in out and "█" in out


@pytest.mark.skipif(not LLAMA2.is_file(), reason=f"the LLaMA-2 tokenizer is not at {LLAMA2}")
def test_stats_names_the_tokenizer_it_counted_with(tmp_path, capsys):
    assert main(["trace", "stats", str(fixtures.sharegpt(tmp_path)), "--tokenizer", str(LLAMA2)]) == 0
    assert "tokens counted with sentencepiece tokenizer.model" in capsys.readouterr().out


def test_a_bad_trace_is_one_line_and_exit_2(tmp_path, capsys):
    path = fixtures.lines(tmp_path / "t.jsonl", [{"prompt": "a", "output_len": 1}, {"prompt": "b", "output_len": -1}])
    assert main(["trace", "stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2, field 'output_len'" in err and "Traceback" not in err
    (tmp_path / "b.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert main(["trace", "stats", str(tmp_path / "b.bin")]) == 2
    assert "binary data" in capsys.readouterr().err


def test_convert_writes_project_lines_that_replay_the_same_requests(tmp_path, capsys):
    src = fixtures.mooncake(tmp_path)
    out = tmp_path / "out.jsonl"
    assert main(["trace", "convert", str(src), "--to", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["timestamp"] for r in rows] == [0, 0.25, 1.0]
    assert load_trace(out) == load_trace(src)
    assert [t.timestamp for t in requests(out)] == [0, 0.25, 1.0]
    assert [o for o, _ in build_plan(out, LoadSpec(arrivals="trace")).plan] == [0, 0.25, 1.0]


def test_convert_refuses_to_overwrite_unless_forced_and_writes_nothing_on_error(tmp_path, capsys):
    src, out = fixtures.alpaca_array(tmp_path), tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    assert main(["trace", "convert", str(src), "--to", str(out)]) == 2
    assert "must not exist" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert main(["trace", "convert", str(src), "--to", str(out), "--force"]) == 0
    assert len(out.read_text().splitlines()) == 2
    bad = fixtures.lines(tmp_path / "bad.jsonl", [{"prompt": "a", "output_len": 1}] * 50 + ["{broken"])
    fresh = tmp_path / "fresh.jsonl"
    assert main(["trace", "convert", str(bad), "--to", str(fresh)]) == 2
    assert "line 51" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpaca.json", "bad.jsonl", "out.jsonl"]
