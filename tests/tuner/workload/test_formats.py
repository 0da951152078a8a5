import json

import pytest

from serving.config.errors import ConfigError
from tests.conftest import ROOT
from tests.tuner.workload import fixtures
from tuner.workload import formats
from tuner.workload.formats import RawRecord, Skipped
from tuner.workload.trace import Tally, load_trace, requests


@pytest.mark.parametrize("name", list(fixtures.ALL))
def test_each_format_is_detected_from_its_content(tmp_path, name):
    path = fixtures.ALL[name](tmp_path)
    fmt, _ = formats.detect(path)
    assert fmt.name == name


def test_alpaca_lines_and_the_shipped_trace_are_detected(tmp_path):
    assert formats.detect(fixtures.alpaca_lines(tmp_path))[0].name == "alpaca"
    assert formats.detect(ROOT / "traces/alpaca_like_1500.jsonl")[0].name == "jsonl"


def _records(path):
    return list(formats.read(path)[1])


def test_alpaca_array_joins_instruction_and_input_and_skips_an_empty_output(tmp_path):
    recs = _records(fixtures.alpaca_array(tmp_path))
    assert recs[0] == RawRecord("record 0", prompt="Give three tips:", output="Eat well . Sleep . Move .")
    assert recs[1].prompt == "Translate:bonjour"
    assert recs[2] == Skipped("record 2", "empty output")
    trace = load_trace(tmp_path / "alpaca.json")
    assert [r.output_len for r in trace] == [7, 1] and [r.index for r in trace] == [0, 1]


def test_sharegpt_takes_the_first_human_turn_and_the_gpt_turn_after_it(tmp_path):
    tally = Tally()
    trace = [t.request for t in requests(fixtures.sharegpt(tmp_path), tally=tally)]
    assert [(r.prompt, r.output_len) for r in trace] == [("hello there friend", 4), ("why is the sky blue", 1)]
    assert tally.skipped == {"fewer than 2 turns": 1} and tally.kept == 2
    assert "1 skipped (fewer than 2 turns)" in tally.describe()


def test_vllm_custom_output_tokens_default_to_vllms_256(tmp_path):
    trace = load_trace(fixtures.vllm(tmp_path))
    assert [r.output_len for r in trace] == [10, 256] and trace[0].prompt_len == 6


def test_project_lines_keep_output_len_and_an_optional_timestamp(tmp_path):
    items = list(requests(fixtures.project(tmp_path)))
    assert [(t.request.output_len, t.timestamp) for t in items] == [(5, None), (7, 0.5)]


def test_mooncake_gives_lengths_timestamps_in_seconds_and_block_ids(tmp_path):
    recs = _records(fixtures.mooncake(tmp_path))
    assert (recs[1].prompt_tokens, recs[1].output_tokens, recs[1].timestamp, recs[1].hash_ids) == (600, 3, 0.25, (11, 13))
    trace = load_trace(tmp_path / "mooncake.jsonl")
    assert [len(r.prompt.split()) for r in trace] == [700, 600, 30] == [r.prompt_len for r in trace]


def test_azure_parses_seven_decimal_timestamps_and_skips_zero_outputs(tmp_path):
    tally = Tally()
    items = list(requests(fixtures.azure(tmp_path), tally=tally))
    t = [i.timestamp - items[0].timestamp for i in items]
    assert t == pytest.approx([0, 4.314579, 5.5694100]) and [i.request.prompt_len for i in items] == [374, 396, 120]
    assert tally.skipped == {"no output tokens (GeneratedTokens 0)": 1}


def test_burstgpt_skips_failed_requests_and_keeps_seconds(tmp_path):
    tally = Tally()
    items = list(requests(fixtures.burstgpt(tmp_path), tally=tally))
    assert [(i.timestamp, i.request.prompt_len, i.request.output_len) for i in items] == [(5, 472, 18), (118, 417, 276)]
    assert sum(tally.skipped.values()) == 1


def test_a_forced_format_is_used_and_a_wrong_one_is_refused(tmp_path):
    path = fixtures.vllm(tmp_path)
    assert formats.read(path, "vllm")[0].name == "vllm"
    with pytest.raises(ConfigError, match="trace_format=azure reads csv"):
        formats.read(path, "azure")
    with pytest.raises(ConfigError, match="trace_format must be one of"):
        formats.read(path, "parquet")
    with pytest.raises(ConfigError, match=r"line 1, field 'output_len'.*required"):
        load_trace(path, fmt="jsonl")


BAD = [
    ("bad.jsonl", '{"prompt": "a", "output_len": 2}\n{"prompt": "b", "output_len": "many"}\n', r"line 2, field 'output_len'"),
    ("bad.jsonl", '{"prompt": "a", "output_len": 2}\n[1, 2]\n', r"line 2: a JSON object per line must hold, found list"),
    ("bad.jsonl", '{"prompt": "a", "output_len": 2}\n{"prompt": \n', r"line 2: a JSON object per line must hold"),
    ("bad.jsonl", '{"prompt": 3, "output_len": 2}\n', r"line 1, field 'prompt'"),
    ("bad.json", json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "x"}]), r"record 1, field 'output'"),
    ("bad.json", json.dumps([{"instruction": "x", "output": "y"}, 7]), r"record 1: each element must be a JSON object"),
    ("bad.json", json.dumps([{"conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]}]),
     r"record 0, field 'conversations\[0\]'"),
    ("bad.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["a"]}\n', r"field 'hash_ids'"),
    ("bad.jsonl", '{"timestamp": 0, "input_length": -5, "output_length": 1}\n', r"line 1, field 'input_length'.*>= 1"),
    ("bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,5,5\n", r"line 2, field 'TIMESTAMP'"),
    ("bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,5\n", r"line 2: 3 columns must hold"),
    ("bad.csv", "Timestamp,Model,Request tokens,Response tokens\n1,m,x,2\n", r"line 2, field 'Request tokens'"),
    ("bad.csv", "when,what\n1,2\n", r"a known trace format must hold.*columns \['when', 'what'\]"),
    ("empty.jsonl", "\n\n", r"no requests"),
]


@pytest.mark.parametrize("name,text,message", BAD)
def test_a_bad_record_names_the_file_the_record_and_the_field(tmp_path, name, text, message):
    assert str(tmp_path / name) in fixtures.refused(tmp_path / name, text, message)


def test_binary_and_non_utf8_files_are_refused_in_one_line(tmp_path):
    (tmp_path / "bin").write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="binary data"):
        load_trace(tmp_path / "bin")
    (tmp_path / "latin.jsonl").write_bytes(b'{"prompt": "caf\xe9", "output_len": 2}\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_trace(tmp_path / "latin.jsonl")
    late = tmp_path / "late.jsonl"  # undecodable bytes past the sniffed head: the line is named
    late.write_bytes(b'{"prompt": "a", "output_len": 2}\n' * 5000 + b'{"prompt": "\xff", "output_len": 2}\n')
    with pytest.raises(ConfigError, match="line 5001: UTF-8"):
        load_trace(late)
    with pytest.raises(ConfigError, match="not found"):
        load_trace(tmp_path / "missing.jsonl")


def test_json_arrays_are_decoded_element_by_element_across_buffer_edges(tmp_path):
    from tuner.workload.formats.base import json_array
    recs = [{"instruction": "x" * (i * 7 % 50), "output": f"y {i}", "nested": {"a": [1, {"b": "]"}]}} for i in range(200)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(recs, indent=1))
    for chunk in (3, 17, 64, 1 << 20):
        assert [o for _, o in json_array(path, chunk)] == recs
    path.write_text("[]")
    assert list(json_array(path)) == []
    for text, message in [('[{"a": 1} {"b": 2}]', "record 1: a JSON array must hold, found '{'"),
                          ('[{"a": 1}, {"b": ', "record 1: a JSON array must hold"),
                          ('[{"a": 1},', "record 1: a JSON array must hold"),
                          ('[{"a": 1}', "record 1: a JSON array must hold, found the end"),
                          ('{"a": 1}', "no opening")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            list(json_array(path, 4))


def test_a_json_array_is_read_lazily(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + ",".join(json.dumps({"instruction": f"i{k}", "output": "o"}) for k in range(1000)) + ", oops]")
    trace = formats.read(path)[1]
    assert [next(trace).prompt for _ in range(3)] == ["i0:", "i1:", "i2:"]
    with pytest.raises(ConfigError, match="record 1000"):
        list(trace)
