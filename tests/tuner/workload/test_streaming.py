"""Large traces are streamed: a plan holds what it schedules, never the whole file."""
import json
import tracemalloc

from tuner.space.spec import LoadSpec
from tuner.workload.plan import build_plan

RECORD = '{"timestamp": %d, "input_length": %d, "output_length": %d, "hash_ids": [%d, %d]}\n'


def test_reading_stops_once_the_plan_is_full(tmp_path):
    path = tmp_path / "poisoned.jsonl"
    good = "".join(json.dumps({"prompt": f"p {i}", "output_len": 3}) + "\n" for i in range(100))
    path.write_text(good + "this line is never read\n")
    assert len(build_plan(path, LoadSpec(qps=10, requests=100)).plan) == 100


def test_a_million_record_trace_costs_the_plan_not_the_file(tmp_path):
    path = tmp_path / "million.jsonl"
    # 20 copies of one 50,000-record block: the plan is full within the first block, so a reader that
    # went on would take the later copies' early timestamps in too (and hold the file)
    block = "".join(RECORD % (i * 10, 100 + i % 900, 1 + i % 300, i % 7, i) for i in range(50_000))
    with open(path, "w") as f:
        for _ in range(20):
            f.write(block)
    assert path.stat().st_size > 60e6
    tracemalloc.start()
    try:
        planned = build_plan(path, LoadSpec(arrivals="trace", speedup=10, duration=2))   # 1 ms apart: 2,000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    plan = planned.plan
    assert len(plan) == 2000 and plan[-1][0] < 2
    held = sum(len(r.prompt) for _, r in plan)     # the prompt text the plan must hold
    assert peak < 2 * held + 8e6 < path.stat().st_size / 4, (peak, held)
