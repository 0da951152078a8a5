"""The host CPU probe reads what a stack's process groups used, not the rest of the host."""
import subprocess
import sys
import time

from serving.probes.host_cpu import HostCpuProbe

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
IDLE = "import time; time.sleep(30)"


def _group(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _mean(probe: HostCpuProbe, n: int = 6) -> float:
    assert probe.sample() is None           # the first sample only primes the counters
    vals = []
    for _ in range(n):
        time.sleep(0.25)
        vals.append(probe.sample())
    return sum(vals) / len(vals)


def test_busy_group_reads_about_one_core_and_idle_group_near_zero():
    busy, idle = _group(SPIN), _group(IDLE)
    try:
        time.sleep(0.3)
        one_core = 100.0 / HostCpuProbe([busy.pid]).cpus
        b, i = _mean(HostCpuProbe([busy.pid])), _mean(HostCpuProbe([idle.pid]))
        # a spinning process gets at most one core; on a shared machine at least a fifth of one
        assert 0.2 * one_core < b <= one_core * 1.05, (b, one_core)
        assert i < 0.1 * one_core, i
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()


def test_a_process_started_between_samples_is_counted():
    probe = HostCpuProbe([])
    probe.sample()
    busy = _group(SPIN)
    try:
        probe.pgids = {busy.pid}
        time.sleep(0.5)
        assert probe.sample() > 0
    finally:
        busy.kill()
        busy.wait()
