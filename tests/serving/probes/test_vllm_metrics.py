"""vLLM's /metrics parsed with prometheus_client: a scrape of real vLLM 0.32 (CPU) under load."""
from pathlib import Path

from serving.probes.vllm_metrics import (FAMILIES, GENERATION_TOKENS, KV_USAGE, PREEMPTIONS, PROMPT_TOKENS, RUNNING,
                                        WAITING, MetricsScrape, VLLMCounterProbe, VLLMPreemptionProbe, only,
                                        parse_metrics, vllm_probes)

PROMPT_IN_SCRAPE, GENERATION_IN_SCRAPE = 180.0, 14097.0   # vllm:*_tokens_total in the scrape
SCRAPE = (Path(__file__).with_name("data") / "vllm_metrics_busy.txt").read_text()


def test_gauges_and_counters_of_a_real_scrape():
    m = parse_metrics(SCRAPE)
    assert (m[RUNNING], m[WAITING], m[PREEMPTIONS]) == (4.0, 1.0, 4.0)
    assert abs(m[KV_USAGE] - 0.98413) < 1e-5
    # token counters, not summed with their _by_source and _cached siblings
    assert (m[PROMPT_TOKENS], m[GENERATION_TOKENS]) == (PROMPT_IN_SCRAPE, GENERATION_IN_SCRAPE)
    assert "vllm:time_to_first_token_seconds" not in m   # histograms are not usage figures


def test_gauges_sum_over_engines():
    two = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0"} 3.0\n'
           'vllm:num_requests_running{engine="1"} 2.0\n')
    assert parse_metrics(two)[RUNNING] == 5.0


class Scrape(MetricsScrape):
    """The counter's successive values instead of HTTP scrapes."""

    def __init__(self, values):
        super().__init__("http://127.0.0.1:9")
        self.seq = iter(values)

    def values(self):
        v = next(self.seq)
        return {PREEMPTIONS: v, GENERATION_TOKENS: v * 10}


def test_preemptions_count_from_the_first_sample():
    probe = VLLMPreemptionProbe(Scrape([4.0, 4.0, 7.0]))
    assert [probe.sample() for _ in range(3)] == [0.0, 0.0, 3.0]


def test_token_counters_count_what_the_replay_added():
    probe = VLLMCounterProbe(Scrape([4.0, 5.0, 7.0]), "vllm_generation_tokens", GENERATION_TOKENS)
    assert [probe.sample() for _ in range(3)] == [0.0, 10.0, 30.0]


def test_the_probes_parse_only_their_families_and_read_the_same_values():
    # a whole scrape held the GIL ~14 ms every poll and delayed the replay client's reads (only())
    full, picked = parse_metrics(SCRAPE), parse_metrics(SCRAPE, FAMILIES)
    assert picked == {k: full[k] for k in FAMILIES}
    assert len(only(SCRAPE, FAMILIES)) < len(SCRAPE) / 20
    assert all(p.scrape.families == FAMILIES for p in vllm_probes("http://127.0.0.1:9"))
