"""The vLLM surrogate's JSON protocol and its worker's framing, without vLLM."""
import json
import subprocess
import sys

import pytest

from serving.sim.vllm_client import WORKER, SurrogateError, VllmSurrogate, records_of, request_message
from serving.sim.vllm_steptime import StepTime
from serving.workload import Plan, TraceRequest

ST = StepTime(base=0.01, per_prefill_token=1e-4, per_decode_seq=1e-3, per_context_token=1e-6,
              arrival_delay=0.002, delivery_delay=0.001)


def plan(n=3, concurrency=None):
    p = Plan((0.1 * i, TraceRequest(10 + i, f"prompt {i}", output_len=3 + i, prompt_len=4 + i)) for i in range(n))
    p.concurrency = concurrency
    return p


def test_request_carries_the_plan_the_engine_and_the_step_time():
    msg = json.loads(json.dumps(request_message({"model": "m", "max_num_seqs": 8}, 40, ST, plan(2, 1))))
    assert msg["op"] == "simulate" and msg["num_blocks"] == 40 and msg["engine"]["max_num_seqs"] == 8
    assert msg["requests"] == [[0.0, "prompt 0", 4, 3], [0.1, "prompt 1", 5, 4]]
    assert msg["concurrency"] == 1 and StepTime.from_dict(msg["steptime"]) == ST


def test_answer_becomes_records_in_plan_order():
    p = plan(2)
    answer = {"ok": True, "steps": 9, "busy": 0.5, "preemptions": 1,
              "records": [[0.0, 0.2, 0.4, [0.2, 0.3, 0.4], "length", None],
                          [0.1, None, 0.15, [], "length", "server: too long"]]}
    res = records_of(json.loads(json.dumps(answer)), p)
    a, b = res.records
    assert (a.index, a.prompt_len, a.output_len, a.scheduled) == (10, 4, 3, 0.0)
    assert a.ok and a.n_tokens == 3 and a.first_token == 0.2 and a.done == 0.4
    assert not b.ok and b.error == "server: too long" and b.n_tokens == 0
    assert (res.steps, res.preemptions, res.busy) == (9, 1, 0.5)


@pytest.mark.parametrize("answer, match", [({"ok": False, "error": "KeyError: 'x'"}, "KeyError"),
                                           ({"ok": True, "records": [], "steps": 0, "busy": 0}, "0 records for 2")])
def test_a_bad_answer_is_an_error(answer, match):
    with pytest.raises(SurrogateError, match=match):
        records_of(answer, plan(2))


def test_step_time_refuses_unknown_or_negative_terms():
    assert ST.step(100, 4, 1000) == pytest.approx(0.01 + 0.01 + 0.004 + 0.001)
    with pytest.raises(ValueError, match="among"):
        StepTime.from_dict({"bsae": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        StepTime.from_dict({"base": -1.0})


def test_worker_answers_every_line_even_without_vllm():
    """One answer line per request line; a failure is an answer and the worker goes on."""
    lines = ["not json", json.dumps({"op": "nope"}),
             json.dumps(request_message({"model": "m"}, 8, ST, plan(1))), json.dumps({"op": "quit"})]
    out = subprocess.run([sys.executable, str(WORKER)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, timeout=60, cwd=WORKER.parent)
    answers = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(answers) == 3 and not any(a["ok"] for a in answers)
    assert answers[0]["error"].startswith("JSONDecodeError") and "ping, simulate or quit" in answers[1]["error"]
    assert "vllm" in answers[2]["error"]          # no vLLM in this interpreter: said, not crashed
    assert out.returncode == 0


def test_a_worker_that_cannot_start_or_answer_is_a_surrogate_error(tmp_path):
    with pytest.raises(SurrogateError, match="could not start"):
        VllmSurrogate(str(tmp_path / "no-python"))
    with VllmSurrogate("false") as sur:       # starts, and ends at once without a word
        with pytest.raises(SurrogateError, match="without an answer|exited"):
            sur.simulate({"model": "m"}, 8, ST, plan(1))
