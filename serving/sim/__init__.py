"""The simulator: the engine's scheduler and block manager on a virtual clock with a latency model.

vLLM's surrogate (vLLM v1's own scheduler, in a worker in vLLM's interpreter) is vllm_*.py here."""
from serving.sim.latency import LatencyModel
from serving.sim.profile_io import load_profile
from serving.sim.simulator import SimResult, SimSettings, Simulator, simulate

__all__ = ["LatencyModel", "SimResult", "SimSettings", "Simulator", "load_profile", "simulate"]
