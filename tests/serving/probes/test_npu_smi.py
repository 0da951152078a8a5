"""npu-smi parsing (usages and watch formats), the NPU probes against a stand-in npu-smi, and NVML."""
import sys
import types

import pytest

from serving.probes.base import ProbeSampler
from serving.probes.npu_smi import NpuSmi, NpuSmiProbe, parse_usages, parse_watch
from serving.stacks.llm_serving import make_probes, parse_options
from tests.serving.stacks.standin import build_standin

USAGES_910B = """
        NPU ID                         : 0
        Chip Count                     : 1

        DDR Capacity(MB)               : 15171
        DDR Usage Rate(%)              : 3
        HBM Capacity(MB)               : 32768
        HBM Usage Rate(%)              : 30
        Aicore Usage Rate(%)           : 57
        Aivector Usage Rate(%)         : NA
        Ctrlcpu Usage Rate(%)          : 9
        Chip ID                        : 0
"""

WATCH = """NpuID(Idx)  ChipId(Idx) Pwr(W)      Temp(C)     AI Core(%)  AI Cpu(%)   Ctrl Cpu(%) Memory(%)   Memory BW(%)
2           0           90.1        34          0           0           2           5           0
2           0           90.3        35          83          1           NA          5           12
"""


def test_parse_usages_reads_name_value_lines():
    u = parse_usages(USAGES_910B)
    assert u["Aicore Usage Rate(%)"] == 57.0 and u["HBM Usage Rate(%)"] == 30.0
    assert u["HBM Capacity(MB)"] == 32768.0 and u["NPU ID"] == 0.0
    assert u["Aivector Usage Rate(%)"] is None  # NA


def test_parse_usages_first_chip_wins():
    two = USAGES_910B + USAGES_910B.replace(": 57", ": 11").replace("Chip ID                        : 0", "Chip ID : 1")
    assert parse_usages(two)["Aicore Usage Rate(%)"] == 57.0


def test_parse_watch_table():
    rows = parse_watch("some banner\n" + WATCH)
    assert len(rows) == 2
    assert list(rows[0]) == ["NpuID(Idx)", "ChipId(Idx)", "Pwr(W)", "Temp(C)", "AI Core(%)", "AI Cpu(%)",
                             "Ctrl Cpu(%)", "Memory(%)", "Memory BW(%)"]
    assert rows[1]["AI Core(%)"] == 83.0 and rows[1]["Pwr(W)"] == 90.3 and rows[1]["Ctrl Cpu(%)"] is None
    assert parse_watch("no table here") == []


@pytest.fixture
def smi(tmp_path):
    return str(build_standin(tmp_path).bin / "npu-smi")


def test_probe_runs_npu_smi_and_shares_one_reading(smi, monkeypatch):
    aicore = NpuSmiProbe(3, smi)
    hbm = aicore.hbm_probe()
    assert aicore.smi.args[1:] == ["info", "-t", "usages", "-i", "3"]
    assert (aicore.name, hbm.name) == ("npu_aicore", "npu_hbm")
    assert aicore.sample() == 57.0 and hbm.sample() == 30.0 and aicore.hbm == 30.0
    monkeypatch.setenv("STANDIN_AICORE", "81")
    aicore.smi.max_age = 0
    assert aicore.sample() == 81.0


def test_probe_in_sampler_summarises_both(smi):
    aicore = NpuSmiProbe(0, smi)
    with ProbeSampler([aicore, aicore.hbm_probe()], interval=0.05) as s:
        import time
        time.sleep(0.3)
    m = s.summary()
    assert m["npu_aicore_mean"] == 57.0 and m["npu_hbm_mean"] == 30.0 and m["npu_aicore_samples"] >= 2


def test_unreadable_device_gives_none_not_an_exception(smi):
    p = NpuSmiProbe(99, smi)  # the stand-in has 8 NPUs
    assert p.sample() is None and "invalid" in p.smi.last_error


def test_missing_npu_smi_says_what_to_set(tmp_path):
    with pytest.raises(RuntimeError, match="llm_serving.npu_smi="):
        NpuSmi(0, str(tmp_path / "nope"))


def test_stack_probes_follow_accelerator_option(smi, monkeypatch):
    assert [p.name for p in make_probes(parse_options({"npu_smi": smi}), 1)] == ["npu_aicore", "npu_hbm", "npu_power"]
    assert make_probes(parse_options({"npu_smi": smi, "npu_id": 5}), 1)[0].smi.args[-1] == "5"
    assert make_probes(parse_options({"accelerator": "none"}), 0) == []
    install_fake_nvml(monkeypatch, util=42)
    gpu, power = make_probes(parse_options({"accelerator": "gpu"}), 0)
    assert gpu.name == "gpu_util" and gpu.sample() == 42.0 and (power.name, power.unit) == ("gpu_power", "W")


def install_fake_nvml(monkeypatch, util: int):
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nv.NVMLError = NVMLError
    nv.calls = []
    nv.nvmlInit = lambda: nv.calls.append("init")
    nv.nvmlShutdown = lambda: nv.calls.append("shutdown")

    def handle(i):
        if i > 0:
            raise NVMLError("Invalid Argument")
        return "h0"

    nv.nvmlDeviceGetHandleByIndex = handle
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=util, memory=10)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=25, total=100)
    # the real call: total energy in mJ since the driver loaded; here 250 W from the first call on
    nv.energy_t0 = None

    def energy(h):
        import time
        now = time.monotonic()
        nv.energy_t0 = nv.energy_t0 or now
        return int(10_000_000 + 250_000 * (now - nv.energy_t0))

    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    return nv


def test_nvml_probe(monkeypatch):
    from serving.probes.nvml import NvmlProbe
    nv = install_fake_nvml(monkeypatch, util=64)
    p = NvmlProbe(0)
    assert p.sample() == 64.0 and p.memory_percent() == 25.0
    p.close()
    p.close()
    assert nv.calls == ["init", "shutdown"]
    with pytest.raises(RuntimeError, match="no GPU 1"):
        NvmlProbe(1)
    assert nv.calls[-1] == "shutdown"


def test_nvml_missing_says_what_to_install(monkeypatch):
    from serving.probes.nvml import NvmlProbe
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match="pip install nvidia-ml-py"):
        NvmlProbe(0)


def test_npu_power_probe_reads_npu_smi_power_and_the_sampler_integrates_it(smi, monkeypatch):
    from serving.probes.npu_smi import NpuPowerProbe
    monkeypatch.setenv("STANDIN_POWER", "120.0")
    p = NpuPowerProbe(2, smi)
    assert p.smi.args[1:] == ["info", "-t", "power", "-i", "2"] and p.sample() == 120.0
    with ProbeSampler([p], interval=0.05) as s:
        import time
        time.sleep(0.4)
    m = s.summary()
    span = s.samples[-1][0] - s.started
    assert m["npu_power_mean"] == 120.0 and m["npu_power_joules"] == pytest.approx(120.0 * span, rel=1e-6)
    assert "npu_aicore_joules" not in m


@pytest.mark.parametrize("label, watts", [("NPU Real-time Power(W)", 88.5), ("Power Dissipation(W)", 88.5),
                                          ("Power(W)", 88.5), ("Rated Power Dissipation(W)", None)])
def test_npu_power_probe_reads_each_drivers_label_but_not_a_rating(smi, monkeypatch, label, watts):
    from serving.probes.npu_smi import NpuPowerProbe
    monkeypatch.setenv("STANDIN_POWER", "88.5")
    monkeypatch.setenv("STANDIN_POWER_LABEL", label)
    assert NpuPowerProbe(0, smi).sample() == watts


def test_nvml_energy_probe_gives_mean_power_from_the_energy_counter(monkeypatch):
    from serving.probes.nvml import NvmlEnergyProbe
    install_fake_nvml(monkeypatch, util=10)
    p = NvmlEnergyProbe(0)
    with ProbeSampler([p], interval=0.05) as s:
        import time
        time.sleep(0.4)
    m = s.summary()
    assert m["gpu_power_mean"] == pytest.approx(250.0, rel=0.02)
    span = s.samples[-1][0] - s.started
    assert m["gpu_power_joules"] == pytest.approx(250.0 * span, rel=0.05)


def test_nvml_energy_probe_without_the_counter_reads_nothing(monkeypatch):
    from serving.probes.nvml import NvmlEnergyProbe
    nv = install_fake_nvml(monkeypatch, util=10)

    def unsupported(h):
        raise nv.NVMLError("Not Supported")

    nv.nvmlDeviceGetTotalEnergyConsumption = unsupported
    p = NvmlEnergyProbe(0)
    assert p.sample() is None and p.sample() is None
