"""GPU utilisation and power from NVML (the ``pynvml`` module of the nvidia-ml-py package).

``utilization.gpu`` is the percent of the driver's last sample period (1/6 s to 1 s) in
which a kernel ran: coarse, but the same figure nvidia-smi shows. Power comes from the
total-energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded, Volta
and later): the energy between two samples over their interval is the mean power, so the
sampler's integral is the energy the GPU drew, not an extrapolation of point readings.
"""
from __future__ import annotations

import time

from serving.probes.base import Probe


def _nvml():
    try:
        import pynvml
    except ImportError:
        raise RuntimeError("GPU usage needs NVML's Python bindings: pip install nvidia-ml-py "
                           "(or set accelerator: none to run without usage probes)") from None
    return pynvml


class NvmlProbe(Probe):
    name = "gpu_util"

    def __init__(self, device_index: int = 0):
        self._nvml = nv = _nvml()
        try:
            nv.nvmlInit()  # reference-counted by NVML: one per probe, undone in close()
        except nv.NVMLError as err:
            raise RuntimeError(f"NVML did not start ({err}); is the NVIDIA driver loaded?") from None
        try:
            self.handle = nv.nvmlDeviceGetHandleByIndex(device_index)
        except nv.NVMLError as err:
            nv.nvmlShutdown()
            raise RuntimeError(f"NVML has no GPU {device_index}: {err}") from None
        self._open = True

    def sample(self) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        except self._nvml.NVMLError:
            return None

    def memory_percent(self) -> float | None:
        try:
            m = self._nvml.nvmlDeviceGetMemoryInfo(self.handle)
        except self._nvml.NVMLError:
            return None
        return 100.0 * m.used / m.total if m.total else None

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass


class NvmlEnergyProbe(NvmlProbe):
    """Mean GPU power (W) since the previous sample, from the total-energy counter, as probe "gpu_power"."""
    name = "gpu_power"
    unit = "W"

    def __init__(self, device_index: int = 0):
        super().__init__(device_index)
        self._last: tuple[float, int] | None = None

    def sample(self) -> float | None:
        try:
            mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self._nvml.NVMLError:
            return None          # no energy counter on this GPU (before Volta)
        now = time.monotonic()
        last, self._last = self._last, (now, mj)
        if last is None or now <= last[0]:
            return None          # the first reading only sets the baseline
        return (mj - last[1]) / 1000.0 / (now - last[0])
