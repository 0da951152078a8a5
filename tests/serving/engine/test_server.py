"""End to end through HTTP: the real server process, launched like a trial launches it."""
import json
import urllib.request

import pytest

from serving.stacks.base import LaunchSpec
from serving.stacks.embedded import EmbeddedStack

pytestmark = pytest.mark.xdist_group("engine_server")  # one worker runs the module: its engine server is made once


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import SMALL_MODEL, TINY
    from serving.config.render import render
    d = tmp_path_factory.mktemp("srv")
    cfg = d / "config.yaml"
    render(TINY, {"model_config.decode_batch_size": 4, "pa_config.num_blocks": 64, **SMALL_MODEL}, cfg)
    running = EmbeddedStack().launch(LaunchSpec(cfg, d, ready_timeout=30))
    yield running
    running.stop()
    assert not running.proc.group_alive()


def test_binds_loopback_and_answers_health(server):
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url + "/health") as resp:
        assert json.loads(resp.read())["status"] == "ok"


def test_generate_returns_llm_serving_shape(server):
    out = json.loads(post(server.url + "/models/llama2/generate",
                          {"inputs": "I love Beijing, because", "parameters": {"max_new_tokens": 5, "do_sample": "False"}}))
    assert out["finish_reason"] == "length" and out["generated_tokens"] == 5 and len(out["tokens"]) == 5
    assert out["generated_text"].startswith("I love Beijing, because")


def test_stream_is_json_lines_ending_with_full_text(server):
    text = post(server.url + "/models/llama2/generate_stream",
                {"inputs": "hello there", "parameters": {"max_new_tokens": 4, "return_full_text": True}})
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    assert all(x["event"] == "message" for x in lines)
    tokens = [x for x in lines if x["data"][0]["tokens"]]
    assert len(tokens) == 4
    last = lines[-1]["data"][0]
    assert last["finish_reason"] == "length" and last["generated_text"].startswith("hello there")


def test_stream_flag_on_plain_route(server):
    text = post(server.url + "/models/llama2", {"inputs": "a b c", "parameters": {"max_new_tokens": 2}, "stream": "True"})
    assert len([x for x in text.splitlines() if x.strip()]) == 3


def test_prompt_out_of_range_is_error202(server):
    out = json.loads(post(server.url + "/models/llama2/generate",
                          {"inputs": "word " * 10, "parameters": {"max_new_tokens": 5000}}))
    assert out["finish_reason"] == "prompt_out_of_range" and "Error202" in out["generated_text"]


def test_bad_body_is_400(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        post(server.url + "/models/llama2/generate", {"parameters": {}})
    assert err.value.code == 400


def test_metrics_count_work(server):
    def metrics() -> dict:
        with urllib.request.urlopen(server.url + "/metrics") as resp:
            return json.loads(resp.read())
    before = metrics()  # the module's other tests may have run first, on this server, in any order
    post(server.url + "/models/llama2/generate", {"inputs": "count me", "parameters": {"max_new_tokens": 6}})
    m = metrics()
    assert m["tokens_generated"] - before["tokens_generated"] == 6 and m["busy_s"] > before["busy_s"]
    assert m["kv_blocks_used"] == 0
    with urllib.request.urlopen(server.url + "/metrics/steps?since=0") as resp:
        steps = json.loads(resp.read())
    assert steps["next"] == m["steps"] and {s["kind"] for s in steps["steps"]} == {"prefill", "decode"}


# -- bad requests: 400 with one clear line, the engine never sees them --------------------------

ROUTES = ["/models/llama2/generate", "/models/llama2/generate_stream", "/models/llama2"]


def send(url: str, data: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def good_request_works(server) -> None:
    out = json.loads(post(server.url + "/models/llama2/generate",
                          {"inputs": "still here", "parameters": {"max_new_tokens": 3, "do_sample": True,
                                                                  "seed": 5, "top_k": 2, "top_p": 0.9}}))
    assert out["finish_reason"] == "length" and out["generated_tokens"] == 3
    with urllib.request.urlopen(server.url + "/health") as resp:
        assert json.loads(resp.read())["status"] == "ok"


@pytest.mark.parametrize("parameters, says", [
    ({"seed": -1}, '"seed"'), ({"temperature": "nan"}, '"temperature"'), ({"temperature": float("nan")}, "finite"),
    ({"temperature": -0.5}, "temperature"), ({"top_k": -3}, "top_k"), ({"top_k": 10**12}, "top_k"),
    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_p": "inf"}, "top_p"), ({"top_k": "many"}, "top_k"),
    ({"top_k": 2.5}, "integer"), ({"top_k": True}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 10**40}, "max_new_tokens"), ({"max_new_tokens": [5]}, "max_new_tokens"),
    ({"seed": 2**64}, "seed"), ({"do_sample": "perhaps"}, "do_sample"), ({"return_full_text": {}}, "return_full_text"),
    ([1, 2], "parameters"), ("x", "parameters")])
def test_bad_parameters_are_400_with_a_clear_line(server, parameters, says):
    for route in ROUTES:
        status, text = send(server.url + route, json.dumps({"inputs": "a b c", "parameters": parameters}).encode())
        assert status == 400 and says in text and "\n" not in text.strip(), (route, parameters, text)
    good_request_works(server)


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b'"text"', b"null", b'{"inputs": 5}',
                                  b'{"parameters": {}}', b"\xff\xfe", b"[" * 100_000, b'{"inputs": "a", "stream": "x"}',
                                  b'{"inputs": "a", "parameters": {"seed": ' + b"9" * 5000 + b"}}"])
def test_bodies_that_are_not_requests_are_400(server, data):
    status, text = send(server.url + "/models/llama2", data)
    assert status == 400 and text.strip() and "\n" not in text.strip(), (data[:40], text)


def test_since_must_be_an_integer(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/metrics/steps?since=soon")
    assert err.value.code == 400


def _bodies():
    from hypothesis import strategies as st
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 6),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                        st.sampled_from(["nan", "-1", "inf", "1e999", "3", "0.5", "True", "False", "0", ""]))
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                          max_leaves=4)
    keys = st.sampled_from(["top_k", "top_p", "temperature", "max_new_tokens", "seed", "do_sample",
                            "return_full_text", "other"])
    params = st.one_of(st.dictionaries(keys, values, max_size=7), values)
    request = st.fixed_dictionaries({"inputs": st.one_of(st.text(max_size=20), values)},
                                    optional={"parameters": params, "stream": values})
    return st.one_of(request, values)


def test_any_body_gets_200_or_400_and_the_engine_keeps_serving(server):
    """Property: whatever JSON arrives on any route, the answer is 200 or 400 (one line), never a
    dead engine; a good request still works afterwards."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(body=_bodies(), route=st.sampled_from(ROUTES))
    def check(body, route):
        status, text = send(server.url + route, json.dumps(body).encode())  # NaN/Infinity go as JSON's extension
        assert status in (200, 400), (status, body, text[:300])
        if status == 400:
            assert text.strip() and "\n" not in text.strip(), text

    check()
    good_request_works(server)
    assert server.alive()
