"""Replay a planned workload against a running stack over HTTP, in the stack's wire protocol."""
from serving.replay.client import Replayer, StopCondition, replay
from serving.replay.openai import OpenAIProtocol
from serving.replay.llm_serving import LLMServingProtocol
from serving.replay.workers import workers_for
from serving.replay.pool import SenderPool
from serving.replay.protocol import ReplayOptions, WireProtocol

__all__ = ["Replayer", "StopCondition", "replay", "ReplayOptions", "WireProtocol", "LLMServingProtocol", "OpenAIProtocol",
           "SenderPool", "workers_for"]
