"""Busy fraction of the embedded engine from its /metrics: the CPU analogue of AI-core usage."""
from __future__ import annotations

import json
import urllib.request

from serving.probes.base import Probe


def fetch_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class EngineBusyProbe(Probe):
    name = "engine_busy"

    def __init__(self, base_url: str):
        self.url = base_url.rstrip("/") + "/metrics"
        self._last: tuple[float, float] | None = None

    def sample(self) -> float | None:
        m = fetch_json(self.url)
        cur = (float(m["uptime_s"]), float(m["busy_s"]))
        last, self._last = self._last, cur
        if last is None or cur[0] <= last[0]:
            return None
        return 100.0 * min(1.0, (cur[1] - last[1]) / (cur[0] - last[0]))
