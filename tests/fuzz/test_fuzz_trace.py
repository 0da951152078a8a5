"""Bad traces (bytes, non-UTF-8, lines that are not objects, records without a prompt or a length)
and bad base configs: refused before the storage or any trial exists, naming the file."""
from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import assert_rejected, seen

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GOOD = json.dumps({"prompt": "tell me a story", "output_len": 8})
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
not_an_object = st.one_of(scalars, st.lists(scalars, max_size=3)).map(json.dumps)
bad_record = st.one_of(
    st.dictionaries(st.sampled_from(["input", "output", "text", "len"]), scalars, max_size=3),   # no prompt
    st.builds(lambda n: {"prompt": "hi", "output_len": n}, st.one_of(st.integers(max_value=0), st.floats(),
                                                                      st.text(max_size=3), st.none())),
    st.builds(lambda p: {"prompt": p, "output_len": 4}, st.one_of(st.integers(), st.lists(st.integers()), st.none())),
).map(lambda d: json.dumps(d, allow_nan=True))
not_json = st.from_regex(r"[{\[a-z][^\n]{0,20}", fullmatch=True).filter(lambda t: not _parses(t))


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def run(sandbox, *extra: str):
    return sandbox.tune("run", "--root", str(sandbox.root), "--n-trials", "1", "--no-progress",
                        "trace=traces/fuzz.jsonl", "load.duration=1", *extra)


@FUZZ
@given(good=st.integers(min_value=0, max_value=3), bad=st.one_of(not_an_object, bad_record, not_json))
def test_a_bad_line_anywhere_is_named(sandbox, good, bad):
    text = "\n".join([GOOD] * good + [bad] + [GOOD]) + "\n"
    seen("trace line", text)
    sandbox.write("traces/fuzz.jsonl", text)
    assert_rejected(run(sandbox), "fuzz.jsonl")


@FUZZ
@given(blob=st.binary(max_size=100).map(lambda b: b + b"\xc3\x28"))   # an invalid UTF-8 sequence
def test_a_binary_trace_is_one_line(sandbox, blob):
    seen("trace bytes", blob)
    sandbox.write("traces/fuzz.jsonl", blob)
    assert_rejected(run(sandbox), "fuzz.jsonl")


def test_an_empty_or_missing_trace_is_one_line(sandbox):
    for text in ("", "\n\n  \n"):
        seen("trace line", text)
        sandbox.write("traces/fuzz.jsonl", text)
        assert_rejected(run(sandbox), "fuzz.jsonl", "no requests")
    seen("trace", "missing")
    assert_rejected(sandbox.tune("run", "--root", str(sandbox.root), "--n-trials", "1", "trace=traces/nope.jsonl"),
                    "nope.jsonl")


def _mapping(text: str) -> bool:
    try:
        return isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        return False


@FUZZ
@given(text=st.one_of(st.text(max_size=60).filter(lambda t: not _mapping(t)), st.sampled_from(["model_config: [1", "pa_config: 5\n", "- 1\n- 2\n",
                                                            "model_config: {decode_batch_size: many}\n"])))
def test_a_bad_base_config_stops_the_study_before_its_first_trial(sandbox, text):
    seen("base config", text)
    sandbox.write("configs/fuzz_base.yaml", text)
    r = sandbox.tune("run", "--root", str(sandbox.root), "--n-trials", "1", "base_config=configs/fuzz_base.yaml")
    assert_rejected(r, "fuzz_base.yaml")


# ---- every trace format, plain or compressed (issue 27): a bad field anywhere is named, never allocated

import bz2  # noqa: E402
import csv  # noqa: E402
import gzip  # noqa: E402
import io  # noqa: E402
import lzma  # noqa: E402
import string  # noqa: E402

from tuner.workload.formats.base import MAX_TIMESTAMP, MAX_TOKENS  # noqa: E402

CODECS = {"plain": lambda b: b, "gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
#: integers no token count may be: below 1, past MAX_TOKENS (1e12, 1e300), fractional
bad_count = st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_TOKENS + 1, max_value=10 ** 300),
                      st.floats(allow_nan=True).filter(lambda f: not (f == f and f.is_integer())),
                      st.text(alphabet=string.ascii_letters, min_size=1, max_size=6))
#: no arrival time may be negative, past MAX_TIMESTAMP, NaN or words
bad_time = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=MAX_TIMESTAMP * 1001, allow_infinity=True),
                     st.just(float("nan")), st.text(alphabet=string.ascii_letters, min_size=1, max_size=6))
not_a_string = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.booleans())


def _json_record(fmt: str, field: str, value) -> dict:
    good = {"jsonl": {"prompt": "tell me a story", "output_len": 8, "timestamp": 1.5},
            "vllm": {"prompt": "what is up", "output_tokens": 8},
            "alpaca": {"instruction": "say hi", "input": "", "output": "hi there", "output_len": 3},
            "mooncake": {"timestamp": 100, "input_length": 700, "output_length": 12, "hash_ids": [1, 2]},
            "sharegpt": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}}[fmt]
    return {**good, field: value} if field else good


#: (format, field, bad values): each row a way a user's record can be wrong
JSON_CASES = [("jsonl", "output_len", bad_count), ("jsonl", "timestamp", bad_time), ("jsonl", "prompt", not_a_string),
              ("vllm", "output_tokens", bad_count), ("vllm", "prompt", not_a_string),
              ("alpaca", "output_len", bad_count), ("alpaca", "instruction", not_a_string),
              ("mooncake", "input_length", bad_count), ("mooncake", "output_length", bad_count),
              ("mooncake", "timestamp", bad_time),
              ("mooncake", "hash_ids", st.one_of(st.integers(), st.lists(st.text(max_size=2), min_size=1, max_size=2))),
              ("sharegpt", "conversations", st.one_of(scalars, st.lists(scalars, min_size=1, max_size=2)))]
CSV_HEADS = {"azure": ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
             "burstgpt": ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"]}
CSV_GOOD = {"azure": ["2024-05-10 00:00:00.331306+00:00", "374", "44"],
            "burstgpt": ["5", "ChatGPT", "472", "18", "490", "Conversation log"]}
#: CSV cells are text: the bad ones as a user's file would spell them (0 tokens is a skipped record there)
csv_count = bad_count.filter(lambda v: not (isinstance(v, float) and v == 0)).map(
    lambda v: repr(v) if isinstance(v, float) else str(v))
azure_time = st.one_of(st.text(max_size=12), st.sampled_from(["1969-12-31 23:59:59", "2024-02-30 00:00:00",
                                                             "2024-05-10 00:00:00.5+25:00", "2024-05-10T00:00:00.x",
                                                             "9999-12-31 23:59:59"]))
CSV_CASES = [("azure", "TIMESTAMP", azure_time), ("azure", "ContextTokens", csv_count),
             ("azure", "GeneratedTokens", csv_count), ("burstgpt", "Timestamp", bad_time.map(str)),
             ("burstgpt", "Request tokens", csv_count), ("burstgpt", "Response tokens", csv_count)]


def _csv(fmt: str, rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows([CSV_HEADS[fmt], *rows])
    return buf.getvalue()


@st.composite
def bad_trace(draw):
    """(format, bytes): a trace of one format with one bad field at a drawn place, in a drawn compression."""
    fmt, key, values = draw(st.sampled_from(JSON_CASES + CSV_CASES))
    value, before, after = draw(values), draw(st.integers(0, 3)), draw(st.integers(0, 2))
    if fmt in CSV_HEADS:
        bad = list(CSV_GOOD[fmt])
        bad[CSV_HEADS[fmt].index(key)] = value
        text = _csv(fmt, [CSV_GOOD[fmt]] * before + [bad] + [CSV_GOOD[fmt]] * after)
    else:
        dump = lambda r: json.dumps(r, allow_nan=True)    # noqa: E731
        recs = [_json_record(fmt, "", None)] * before + [_json_record(fmt, key, value)] + \
            [_json_record(fmt, "", None)] * after
        array = fmt in ("sharegpt", "alpaca") and draw(st.booleans())
        text = "[" + ",".join(map(dump, recs)) + "]" if array else "".join(dump(r) + "\n" for r in recs)
    codec = draw(st.sampled_from(list(CODECS)))
    return fmt, key, value, codec, CODECS[codec](text.encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_trace())
def test_a_bad_field_in_any_format_and_compression_is_named(sandbox, case):
    fmt, key, value, codec, blob = case
    seen(f"trace field ({fmt})", (key, value, codec))
    sandbox.write("traces/fuzz.jsonl", blob)
    # the study's own load: every record is in the plan (qps 25 x 1 s > the 7 records at most)
    assert_rejected(run(sandbox), "fuzz.jsonl")


@FUZZ
@given(codec=st.sampled_from(["gzip", "bz2", "xz"]), cut=st.floats(0.05, 0.95), fmt=st.sampled_from(["jsonl", "azure"]))
def test_a_cut_compressed_trace_is_one_line(sandbox, codec, cut, fmt):
    text = _csv(fmt, [CSV_GOOD[fmt]] * 3000) if fmt == "azure" else \
        "".join(json.dumps(_json_record(fmt, "", None)) + "\n" for _ in range(3000))
    blob = CODECS[codec](text.encode())
    seen("trace compressed and cut", (codec, fmt, round(cut, 2)))
    sandbox.write("traces/fuzz.jsonl", blob[: max(8, int(len(blob) * cut))])
    assert_rejected(run(sandbox, "load.arrivals=trace", "load.qps=null", "load.duration=null"), "fuzz.jsonl")


@st.composite
def good_timed_trace(draw):
    """A valid trace of a timed format, its records in any order of time, in any compression."""
    fmt = draw(st.sampled_from(["jsonl", "mooncake", "azure", "burstgpt"]))
    times = draw(st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=12))
    lengths = draw(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=len(times),
                            max_size=len(times)))
    if fmt == "jsonl":
        text = "".join(json.dumps({"prompt": " ".join(["w"] * p), "output_len": o, "timestamp": t / 1000}) + "\n"
                       for t, (p, o) in zip(times, lengths))
    elif fmt == "mooncake":
        text = "".join(json.dumps({"timestamp": t, "input_length": p, "output_length": o}) + "\n"
                       for t, (p, o) in zip(times, lengths))
    elif fmt == "azure":
        import datetime as dt
        base = dt.datetime(2024, 5, 10, tzinfo=dt.timezone.utc)
        text = _csv(fmt, [[(base + dt.timedelta(milliseconds=t)).isoformat(sep=" "), str(p), str(o)]
                          for t, (p, o) in zip(times, lengths)])
    else:
        text = _csv(fmt, [[str(t / 1000), "m", str(p), str(o), str(p + o), "API log"] for t, (p, o) in zip(times, lengths)])
    codec = draw(st.sampled_from(list(CODECS)))
    return fmt, times, CODECS[codec](text.encode())


@settings(max_examples=80, deadline=None)
@given(case=good_timed_trace())
def test_trace_arrivals_are_the_trace_s_times_sorted_from_the_earliest(tmp_path_factory, case):
    from tuner.space.spec import LoadSpec
    from tuner.workload.plan import build_plan
    from tuner.workload.trace import requests
    fmt, times, blob = case
    path = tmp_path_factory.mktemp("good") / "t"
    path.write_bytes(blob)
    planned = build_plan(path, LoadSpec(arrivals="trace"))
    got = [o for o, _ in planned.plan]
    want = sorted((t - min(times)) / 1000 for t in times)
    assert got == sorted(got) and min(got) == 0 and all(o >= 0 for o in got)
    assert len(got) == len(times) and max(abs(a - b) for a, b in zip(got, want)) < 1e-5
    assert ("out of order" in planned.tally.describe()) == (times != sorted(times))
    assert [t.request.output_len for t in requests(path)] == [r.output_len for r in
                                                               sorted((r for _, r in planned.plan), key=lambda r: r.index)]
