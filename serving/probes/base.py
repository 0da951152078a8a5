"""A probe reads one usage figure (percent) or power (watts) now; a sampler polls probes during a replay.

A power probe (``unit = "W"``) is also integrated over the replay: ``<name>_joules`` is the sum of
each sample times the time since the previous one (the first from the sampler's start). A probe
whose sample is the mean power since its previous sample (NVML's energy counter) makes that sum
the exact energy; an instantaneous reading (npu-smi) makes it a Riemann sum.
"""
from __future__ import annotations

import abc
import threading
import time


class Probe(abc.ABC):
    name: str  # e.g. "engine_busy", "npu_aicore", "gpu_util", "gpu_power"
    unit: str = "%"   # "W" for a power probe: its samples are integrated into joules

    @abc.abstractmethod
    def sample(self) -> float | None:
        """Usage in percent since the previous sample (or right now); None if unreadable."""

    def close(self) -> None:
        pass


class ProbeSampler:
    """Polls every probe each ``interval`` seconds on a thread; samples are (t, name, value)."""

    def __init__(self, probes: list[Probe], interval: float = 0.25):
        self.probes, self.interval = probes, interval
        self.samples: list[tuple[float, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probes", daemon=True)

    def __enter__(self) -> "ProbeSampler":
        for p in self.probes:
            p.sample()  # prime interval-based probes so the first sample covers the replay only
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()  # the tail of the replay
        for p in self.probes:
            p.close()

    def _poll(self) -> None:
        now = time.monotonic()
        for p in self.probes:
            try:
                v = p.sample()
            except Exception:  # a probe that fails must not end the trial
                v = None
            if v is not None:
                self.samples.append((now, p.name, float(v)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in sorted({n for _, n, _ in self.samples}):
            vals = [v for _, n, v in self.samples if n == name]
            out[f"{name}_mean"] = sum(vals) / len(vals)
            out[f"{name}_peak"] = max(vals)
            out[f"{name}_samples"] = float(len(vals))
        for p in self.probes:
            if p.unit == "W" and any(n == p.name for _, n, _ in self.samples):
                out[f"{p.name}_joules"] = self.joules(p.name)
        return out

    def joules(self, name: str) -> float:
        """Energy of a power probe over the sampled span: each sample times its interval."""
        total, prev = 0.0, getattr(self, "started", None)
        for t, n, v in self.samples:
            if n != name:
                continue
            if prev is not None:
                total += v * (t - prev)
            prev = t
        return total
