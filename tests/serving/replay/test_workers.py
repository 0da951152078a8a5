"""How many sender processes a plan gets."""
import os

from serving.replay import workers_for
from serving.workload import Plan, TraceRequest


def test_only_a_fast_plan_of_some_size_gets_several_senders():
    slow = [(i * 0.01, TraceRequest(i, "ok", 3, 1)) for i in range(1000)]    # 100 req/s
    fast = [(i * 0.001, TraceRequest(i, "ok", 3, 1)) for i in range(1000)]   # 1,000 req/s
    burst = [(0.0, TraceRequest(i, "ok", 3, 1)) for i in range(100)]         # a saturation probe
    cpus = max(1, min(os.cpu_count() or 1, 4))
    assert workers_for(slow) == 1 and workers_for(fast[:10]) == 1
    assert workers_for(fast) == cpus and workers_for(fast[:100]) == cpus and workers_for(burst) == cpus
    assert workers_for(fast, 3) == 3 and workers_for(Plan(fast, concurrency=8)) == 1


def test_a_burst_inside_a_slow_plan_gets_several_senders():
    """Decided by the fastest stretch, not the mean rate: 60 requests at once inside a 1 req/s trace."""
    slow = [(float(i), TraceRequest(i, "ok", 3, 1)) for i in range(200)]
    burst = [(100.0, TraceRequest(1000 + i, "ok", 3, 1)) for i in range(60)]
    cpus = max(1, min(os.cpu_count() or 1, 4))
    assert workers_for(slow) == 1
    assert workers_for(sorted(slow + burst, key=lambda p: p[0])) == cpus
