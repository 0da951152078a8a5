"""Bad search spaces: wrong types at any depth, missing and unknown keys, broken YAML, bytes."""
from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import assert_rejected, seen

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SPACE = "search_spaces/fuzz.yaml"
REQUIRED = ("study", "base_config", "trace", "load", "objectives", "params")
#: free-form mappings: any value is valid there (the request's generation parameters)
FREE = {("load", "parameters")}


def base_space(sandbox) -> dict:
    data = yaml.safe_load((sandbox.root / "search_spaces/pa_batching.yaml").read_text())
    data["study"] = "fuzz"
    return data


def paths(node, prefix=()) -> list[tuple]:
    """Every key path in the space (mapping keys and list positions), outside the free-form mappings."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        p = (*prefix, k)
        if p[:2] in FREE:
            continue
        out.append(p)
        out += paths(v, p)
    return out


def wrong_for(value, path: tuple = ()) -> st.SearchStrategy:
    """Values of a type that cannot stand where ``value`` stands."""
    words = st.from_regex(r"[a-z]{1,8}[!?]", fullmatch=True)   # never parses as a number or bool
    if len(path) > 1 and path[-2] == "choices":   # a choice may be any scalar, never a list or a mapping
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=3),
                         st.dictionaries(words, st.integers(), min_size=1, max_size=2))
    if isinstance(value, dict):
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.integers(), words)
    if isinstance(value, bool) or value is None:
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.dictionaries(words, st.integers(),
                                                                                          min_size=1, max_size=2))
    if isinstance(value, (int, float)):
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=3), words,
                         st.dictionaries(words, st.integers(), min_size=1, max_size=2))
    if isinstance(value, str):
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=3),
                         st.dictionaries(words, st.integers(), min_size=1, max_size=2))
    return st.one_of(st.dictionaries(words, st.integers(), min_size=1, max_size=2), words)  # a list


def at(node, path):
    for k in path:
        node = node[k]
    return node


def report(sandbox, space_file: str = "fuzz", *extra: str):
    """`tune report` on a storage that does not exist: the space is loaded (and must be rejected) first."""
    return sandbox.tune("report", "--study", space_file, "--root", str(sandbox.root),
                        "--storage", f"sqlite:///{sandbox.root}/trials/none.db", *extra)


@FUZZ
@given(data=st.data())
def test_a_wrong_type_at_any_depth_is_one_line(sandbox, data):
    space = base_space(sandbox)
    path = data.draw(st.sampled_from(paths(space)), label="path")
    bad = data.draw(wrong_for(at(space, path), path), label="value")
    mutated = copy.deepcopy(space)
    at(mutated, path[:-1])[path[-1]] = bad
    text = yaml.safe_dump(mutated)
    seen("space: wrong type", text)
    sandbox.write(SPACE, text)
    r = sandbox.tune("run", "--study", "fuzz", "--root", str(sandbox.root), "--n-trials", "1", "--no-progress")
    assert_rejected(r, "fuzz.yaml")


@FUZZ
@given(data=st.data())
def test_a_missing_or_unknown_key_is_one_line(sandbox, data):
    space = base_space(sandbox)
    mutated = copy.deepcopy(space)
    if data.draw(st.booleans(), label="delete"):
        key = data.draw(st.sampled_from(REQUIRED), label="key")
        del mutated[key]
        must = key
    else:
        mappings = [p for p in paths(space) if isinstance(at(space, p), dict) and p[:1] != ("params",)]
        path = data.draw(st.sampled_from([(), *mappings]), label="where")
        key = data.draw(st.from_regex(r"zz[a-z_]{1,10}", fullmatch=True), label="unknown")
        at(mutated, path)[key] = 1
        must = key
    text = yaml.safe_dump(mutated)
    seen("space: missing/unknown key", text)
    sandbox.write(SPACE, text)
    assert_rejected(sandbox.tune("run", "--study", "fuzz", "--root", str(sandbox.root), "--n-trials", "1"), must)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_as_a_space_file_never_gives_a_traceback(sandbox, text):
    seen("space: any text", text)
    sandbox.write(SPACE, text)
    r = report(sandbox)
    assert_rejected(r)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict):   # not a mapping: the space file itself is what is named
        assert "fuzz.yaml" in r.err


@FUZZ
@given(blob=st.binary(min_size=1, max_size=200).map(lambda b: b"\xff" + b))
def test_bytes_that_are_not_utf8_are_one_line(sandbox, blob):
    seen("space: bytes", blob)
    sandbox.write(SPACE, blob)
    assert_rejected(report(sandbox), "fuzz.yaml", "UTF-8")


@FUZZ
@given(cut=st.integers(min_value=1, max_value=400), junk=st.sampled_from(["[", "{", ": :", "\t", "- ", "'", "&", "*x"]))
def test_broken_yaml_syntax_names_the_line(sandbox, cut, junk):
    text = yaml.safe_dump(base_space(sandbox))
    broken = text[:cut] + junk + text[cut:]
    seen("space: broken syntax", broken)
    sandbox.write(SPACE, broken)
    r = report(sandbox)
    assert_rejected(r)
    try:
        yaml.safe_load(broken)
    except yaml.YAMLError:   # what YAML itself refuses is named as such, with the file
        assert "fuzz.yaml" in r.err and "YAML" in r.err
