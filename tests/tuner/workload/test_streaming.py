"""Large traces are streamed: a plan holds what it schedules, never the whole file."""
import json

import pytest
import tracemalloc

from tuner.space.spec import LoadSpec
from tuner.workload.plan import build_plan

RECORD = '{"timestamp": %d, "input_length": %d, "output_length": %d, "hash_ids": [%d, %d]}\n'


def test_reading_stops_once_the_plan_is_full(tmp_path):
    path = tmp_path / "poisoned.jsonl"
    good = "".join(json.dumps({"prompt": f"p {i}", "output_len": 3}) + "\n" for i in range(100))
    path.write_text(good + "this line is never read\n")
    assert len(build_plan(path, LoadSpec(qps=10, requests=100)).plan) == 100


def test_a_large_trace_costs_the_plan_not_the_file(tmp_path):
    path = tmp_path / "large.jsonl"
    # 4 blocks of 25,000 records, 10 ms apart: the window is within the first block, and only the
    # times (not the prompts) of the rest are read, to know the trace is in time order
    with open(path, "w") as f:
        for c in range(4):
            f.write("".join(RECORD % ((c * 25_000 + i) * 10, 100 + i % 900, 1 + i % 300, i % 7, i)
                            for i in range(25_000)))
    assert path.stat().st_size > 8e6
    tracemalloc.start()
    try:
        planned = build_plan(path, LoadSpec(arrivals="trace", speedup=10, duration=0.25))   # 1 ms apart: 250
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    plan = planned.plan
    assert len(plan) == 250 and plan[-1][0] < 0.25
    held = sum(len(r.prompt) for _, r in plan)     # the prompt text the plan must hold
    # the first pass holds one 8-byte time a record (twice while its array grows), never their text
    # (here ~1.7 MB against a 8.8 MB file)
    assert peak < 2 * held + 2e6 + 16 * 100_000 and peak < path.stat().st_size / 2, (peak, held)


def test_an_unsorted_trace_is_replayed_sorted_with_a_note(tmp_path):
    path = tmp_path / "unsorted.jsonl"     # the second half was logged first
    times = [5000 + i * 100 for i in range(150)] + [i * 100 for i in range(150)]
    path.write_text("".join(RECORD % (t, 10, 2, 0, 1) for t in times))
    planned = build_plan(path, LoadSpec(arrivals="trace"))
    offsets = [o for o, _ in planned.plan]
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets.count(0.0) == 1   # not 151 at once
    assert offsets[-1] == pytest.approx(19.9) and len(offsets) == 300
    assert [r.index for _, r in planned.plan][:2] == [150, 151]     # file order numbers the requests
    load = LoadSpec(arrivals="trace")
    assert "timestamps out of order (1 records earlier than the one before): sorted" in planned.summary(load)
    window = build_plan(path, LoadSpec(arrivals="trace", duration=1.0, requests=5)).plan
    assert [o for o, _ in window] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_skips_are_counted_once_when_trace_arrivals_read_the_file_twice(tmp_path):
    path = tmp_path / "burst.csv"      # 3 zero-response failures (the format's skip), 4 requests over max_tokens
    rows = [(t, 5000 if t % 2 else 10, 0 if t % 3 == 0 else 4) for t in range(1, 13)]
    path.write_text("Timestamp,Model,Request tokens,Response tokens\n" + "".join(f"{t},m,{p},{o}\n" for t, p, o in rows))
    planned = build_plan(path, LoadSpec(arrivals="trace", requests=3, max_tokens=100))
    assert [r.prompt_len for _, r in planned.plan] == [10, 10, 10]
    failed = sum(1 for t, p, o in rows if o == 0)
    assert planned.tally.skipped["no output tokens (Response tokens 0)"] == failed
    assert [o for o, _ in planned.plan] == [1, 3, 7]      # t=2,4,8 (t=6 failed), from the earliest (t=1)
