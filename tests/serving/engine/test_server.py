"""End to end through HTTP: the real server process, launched like a trial launches it."""
import json
import urllib.request

import pytest

from serving.stacks.base import LaunchSpec
from serving.stacks.embedded import EmbeddedStack


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
    with urllib.request.urlopen(server.url + "/metrics") as resp:
        m = json.loads(resp.read())
    assert m["tokens_generated"] >= 9 and m["busy_s"] > 0 and m["kv_blocks_used"] == 0
    with urllib.request.urlopen(server.url + "/metrics/steps?since=0") as resp:
        steps = json.loads(resp.read())
    assert steps["next"] == m["steps"] and {s["kind"] for s in steps["steps"]} == {"prefill", "decode"}
