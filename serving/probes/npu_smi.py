"""AI-core and HBM usage of one Ascend NPU from ``npu-smi``, the driver's command-line tool.

``npu-smi info -t usages -i <id>`` prints ``Name : value`` lines::

    HBM Capacity(MB)               : 32768
    HBM Usage Rate(%)              : 30
    Aicore Usage Rate(%)           : 57
    Chip ID                        : 0

The rates are the driver's own percentages over its last sampling period, so a reading is
"right now"; the sampler's mean over a replay is the trial's AI-core usage. One call feeds
both probes of a device (the AI-core one and the HBM one).

``npu-smi info -t power -i <id>`` prints the chip's power the same way: on a 910B (and every NPU
but the 310) ``NPU Real-time Power(W) : 93.4``; for an MCU, and in older driver releases,
``Power Dissipation(W)``; some cards say ``Power(W)``. The 310 prints ``Rated Power
Dissipation(W)``, its rating and not a reading, so it is never taken as power. The power probe
samples it and the sampler integrates it into the replay's energy (serving.probes.base).
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import time

from serving.probes.base import Probe

AICORE = "Aicore Usage Rate(%)"
HBM = "HBM Usage Rate(%)"
POWER = ("NPU Real-time Power(W)", "Power Dissipation(W)", "Power(W)")  # a rating is not a reading
WATCH_HEADER = "NpuID(Idx)"


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None  # "NA" and the like
    return v if math.isfinite(v) else None


def parse_usages(text: str) -> dict[str, float | None]:
    """``Name : value`` lines to {name: number}; the first chip wins when a card lists several."""
    out: dict[str, float | None] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name and name not in out:
            out[name] = _number(value.strip())
    return out


def parse_watch(text: str) -> list[dict[str, float | None]]:
    """Rows of ``npu-smi info watch``: the header's names (each ends in ')', some hold a space,
    e.g. ``AI Core(%)``) zipped with the whitespace-separated values below them."""
    cols: list[str] | None = None
    rows = []
    for line in text.splitlines():
        if WATCH_HEADER in line:
            cols = [c for c in re.split(r"(?<=\))\s+", line.strip()) if c]
            continue
        vals = line.split()
        if cols and len(vals) == len(cols):
            rows.append({c: _number(v) for c, v in zip(cols, vals)})
    return rows


class NpuSmi:
    """One ``npu-smi info -t usages`` call, shared by the probes of a device for ``max_age`` s."""

    def __init__(self, device_id: int, executable: str = "npu-smi", chip_id: int | None = None,
                 timeout: float = 5.0, max_age: float = 0.2, kind: str = "usages"):
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError(f"npu-smi not found: {executable!r} is not an executable file or on PATH; "
                               "set llm_serving.npu_smi=/path/to/npu-smi (often /usr/local/sbin/npu-smi), "
                               "or llm_serving.accelerator=none to run without usage probes")
        self.args = [path, "info", "-t", kind, "-i", str(device_id)]
        if chip_id is not None:
            self.args += ["-c", str(chip_id)]
        self.timeout, self.max_age = timeout, max_age
        self.last: dict[str, float | None] = {}
        self.last_error = ""
        self._at = -math.inf

    def read(self) -> dict[str, float | None]:
        """The latest figures; {} when npu-smi failed (``last_error`` says why): a probe never raises."""
        now = time.monotonic()
        if now - self._at < self.max_age:
            return self.last
        self._at = now
        try:
            out = subprocess.run(self.args, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            self.last, self.last_error = {}, repr(err)
            return self.last
        if out.returncode != 0:
            self.last, self.last_error = {}, f"exit {out.returncode}: {(out.stdout + out.stderr).strip()[-300:]}"
            return self.last
        self.last, self.last_error = parse_usages(out.stdout), ""
        return self.last


class NpuSmiProbe(Probe):
    """AI-core usage (percent) of NPU ``device_id``; ``hbm`` holds the HBM figure of the same reading."""
    name = "npu_aicore"
    key = AICORE

    def __init__(self, device_id: int = 0, executable: str = "npu-smi", chip_id: int | None = None,
                 smi: NpuSmi | None = None):
        self.smi = smi or NpuSmi(device_id, executable, chip_id)

    def sample(self) -> float | None:
        return self.smi.read().get(self.key)

    @property
    def hbm(self) -> float | None:
        return self.smi.last.get(HBM)

    def hbm_probe(self) -> "NpuHbmProbe":
        return NpuHbmProbe(smi=self.smi)


class NpuHbmProbe(NpuSmiProbe):
    """HBM usage (percent of capacity) of the same NPU, as probe "npu_hbm"."""
    name = "npu_hbm"
    key = HBM


class NpuPowerProbe(Probe):
    """Power (W) of NPU ``device_id`` from ``npu-smi info -t power``, as probe "npu_power"."""
    name = "npu_power"
    unit = "W"

    def __init__(self, device_id: int = 0, executable: str = "npu-smi", chip_id: int | None = None):
        self.smi = NpuSmi(device_id, executable, chip_id, kind="power")

    def sample(self) -> float | None:
        reading = self.smi.read()
        return next((reading[k] for k in POWER if reading.get(k) is not None), None)
