"""A replay polls the stack's usage probes at the stack's own interval (RunningStack.probe_interval)."""
from serving.replay import ReplayOptions
from serving.replay.openai import OpenAIProtocol
from serving.stacks import base
from serving.stacks.vllm import VLLMRunning
from serving.workload import Plan


class Quiet(base.RunningStack):
    url, protocol, pgids, utilisation = "http://127.0.0.1:9", OpenAIProtocol("m"), [], None
    probe_interval = 0.7

    def alive(self):
        return True

    def probes(self):
        return []

    def log_tail(self, max_chars=4000):
        return ""

    def _stop(self):
        pass


def test_the_sampler_polls_at_the_stacks_interval(monkeypatch):
    seen = []
    real = base.ProbeSampler

    def recording(probes, interval=0.25):
        seen.append(interval)
        return real(probes, interval)

    monkeypatch.setattr(base, "ProbeSampler", recording)
    Quiet().replay(Plan([]), ReplayOptions())
    assert seen == [0.7]
    # vLLM's /metrics scrape is costly (a 60 kB text, an HTTP read in the client's process): polled less
    assert VLLMRunning.probe_interval > base.RunningStack.probe_interval
