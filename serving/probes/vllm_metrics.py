"""vLLM's Prometheus ``/metrics`` during a replay: running and waiting requests, KV-cache usage,
preemptions, prompt and generated tokens. Parsed with prometheus_client's text parser.

One scrape serves every probe of a poll (the sampler asks each probe in turn; they share a
``MetricsScrape`` that refetches only when its last read is older than ``max_age``). Gauges are
summed over their label sets (one per engine); ``vllm:kv_cache_usage_perc`` is a fraction
(0..1) upstream and is reported in percent like every probe here. Preemptions and prompt and
generated tokens are counters: each probe reports the increase since the replay began.
"""
from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from serving.probes.base import Probe

__all__ = ["MetricsScrape", "VLLMCounterProbe", "VLLMGaugeProbe", "VLLMPreemptionProbe", "vllm_probes", "parse_metrics", "only", "FAMILIES"]

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"
PREEMPTIONS = "vllm:num_preemptions"   # the family's name; its sample is vllm:num_preemptions_total
PROMPT_TOKENS = "vllm:prompt_tokens"    # counters: prompt tokens prefilled, tokens generated
GENERATION_TOKENS = "vllm:generation_tokens"
FAMILIES = frozenset({RUNNING, WAITING, KV_USAGE, PREEMPTIONS, PROMPT_TOKENS, GENERATION_TOKENS})


def parse_metrics(text: str, families: frozenset[str] | None = None) -> dict[str, float]:
    """{family name: value summed over its label sets} for gauges and counters (``_total`` dropped);
    ``families``: only these are parsed (see ``only``)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text if families is None else only(text, families)):
        if family.type not in ("gauge", "counter"):
            continue
        for s in family.samples:
            if s.name in (family.name, family.name + "_total"):
                out[family.name] = out.get(family.name, 0.0) + float(s.value)
    return out


def only(text: str, families: frozenset[str]) -> str:
    """The lines of ``text`` that belong to ``families`` (their samples and ``# HELP``/``# TYPE`` lines,
    under the family's name or its ``_total``). Why: a scrape of vLLM is ~60 kB, mostly histogram buckets, and
    prometheus_client's parser takes ~14 ms of the GIL on it; every 0.25 s during a replay that
    delayed the replay client's reads enough to stamp 75 % of vLLM's chunks at one instant
    (ITL p50 0.004 ms against 2-3 ms with no probes, 5 req/s on 2 cores). Picking ~10 lines first
    costs well under a millisecond."""
    keep = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            name = parts[2] if len(parts) > 2 and parts[1] in ("HELP", "TYPE") else ""
        else:
            name = line.split("{", 1)[0].split(None, 1)[0] if line.strip() else ""
        if name.removesuffix("_total") in families:
            keep.append(line)
    return "\n".join(keep) + "\n"


class MetricsScrape:
    def __init__(self, base_url: str, max_age: float = 0.05, timeout: float = 2.0,
                 families: frozenset[str] | None = None):
        self.url, self.max_age, self.timeout = base_url.rstrip("/") + "/metrics", max_age, timeout
        self.families = families
        self._at = -1e9
        self._values: dict[str, float] = {}

    def values(self) -> dict[str, float]:
        if time.monotonic() - self._at > self.max_age:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:
                self._values = parse_metrics(resp.read().decode("utf-8"), self.families)
            self._at = time.monotonic()
        return self._values


class VLLMGaugeProbe(Probe):
    def __init__(self, scrape: MetricsScrape, name: str, metric: str, scale: float = 1.0):
        self.scrape, self.name, self.metric, self.scale = scrape, name, metric, scale

    def sample(self) -> float | None:
        v = self.scrape.values().get(self.metric)
        return None if v is None else v * self.scale


class VLLMCounterProbe(Probe):
    """A counter's increase since the first sample (the sampler takes one before the replay and one
    after it): its ``_peak`` is what the replay added, whenever the samples fell."""

    def __init__(self, scrape: MetricsScrape, name: str, metric: str):
        self.scrape, self.name, self.metric = scrape, name, metric
        self._first: float | None = None

    def sample(self) -> float | None:
        v = self.scrape.values().get(self.metric)
        if v is None:
            return None
        if self._first is None:
            self._first = v
        return v - self._first


def VLLMPreemptionProbe(scrape: MetricsScrape) -> VLLMCounterProbe:
    return VLLMCounterProbe(scrape, "vllm_preemptions", PREEMPTIONS)


def vllm_probes(base_url: str) -> list[Probe]:
    scrape = MetricsScrape(base_url, families=FAMILIES)
    return [VLLMGaugeProbe(scrape, "vllm_running", RUNNING), VLLMGaugeProbe(scrape, "vllm_waiting", WAITING),
            VLLMGaugeProbe(scrape, "vllm_kv_cache_usage", KV_USAGE, 100.0), VLLMPreemptionProbe(scrape),
            # tokens vLLM itself counted during the replay: what a replay guarantees, unlike a gauge sample
            VLLMCounterProbe(scrape, "vllm_prompt_tokens", PROMPT_TOKENS),
            VLLMCounterProbe(scrape, "vllm_generation_tokens", GENERATION_TOKENS)]
