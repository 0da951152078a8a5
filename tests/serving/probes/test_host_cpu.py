"""The host CPU probe reads what a stack's process groups used, not the rest of the host."""
import subprocess
import sys
import time

import psutil
import pytest

from serving.probes.host_cpu import HostCpuProbe

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
IDLE = "import time; time.sleep(30)"


def _group(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _measure(pid: int) -> tuple[float, float]:
    """(probe's reading over ~1 s, the same share computed from psutil's counters of the process)."""
    probe = HostCpuProbe([pid])
    assert probe.sample() is None           # the first sample only primes the counters
    c0, t0 = _cpu(pid), time.monotonic()
    time.sleep(1.0)
    value = probe.sample()
    c1, t1 = _cpu(pid), time.monotonic()
    return value, 100.0 * (c1 - c0) / ((t1 - t0) * probe.cpus)


def test_reads_the_groups_cpu_share_and_nothing_else():
    busy, idle = _group(SPIN), _group(IDLE)
    try:
        time.sleep(0.3)
        b, b_expected = _measure(busy.pid)
        i, _ = _measure(idle.pid)
        # the same share psutil's counters give (the two reads are a moment apart); a loaded
        # machine lowers both, so no absolute level is asserted
        assert b > 0 and b == pytest.approx(b_expected, rel=0.3, abs=1.0), (b, b_expected)
        assert i < b and i < 1.0, (i, b)    # a sleeping group reads ~0 while another one spins
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
