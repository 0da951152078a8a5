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
