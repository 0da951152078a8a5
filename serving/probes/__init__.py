"""Accelerator usage probes (engine /metrics, npu-smi, NVML) behind one interface."""
from serving.probes.base import Probe, ProbeSampler

__all__ = ["Probe", "ProbeSampler"]
