"""A stand-in llm-serving checkout and npu-smi, for testing the llm_serving stack without an NPU.

``build_standin(tmp)`` writes:
- examples/start_agent.py: reads agent_ports from --config, one forked agent per port binds
  its port, then "all agents started" (the real script's lines); stays up until stopped.
- examples/server_app_post.py: connects to each agent port (as llm-serving's Worker does),
  runs our embedded engine on serving_config.server_port (so the real HTTP API answers),
  then logs uvicorn's "Uvicorn running on http://127.0.0.1:PORT".
- checkpoint_download/llama/predict_llama2_7b.yaml: a mindformers model yaml.
- bin/npu-smi: prints the real `npu-smi info -t usages -i N` and `npu-smi info watch` formats.

Faults, via STANDIN_FAULT in the processes' environment:
  oom_at_start      agent prints CANN/MindSpore OOM lines and a Traceback, exits 1
  oom_in_agent      an agent child dies of OOM; the launcher stays up, never ready (like the real one)
  early_exit        agent exits 0 before it is ready
  hang              agent never logs its ready line
  port_in_use       an agent binds its port twice: OSError [Errno 98] Address already in use
  server_crash      server raises before uvicorn starts
  crash_mid_replay  server kills the engine and exits 1 once STANDIN_CRASH_AFTER (5) requests came
npu-smi reads STANDIN_AICORE (57), STANDIN_HBM (30) and STANDIN_POWER (90.5 W, ``-t power``, labelled as a 910B does unless STANDIN_POWER_LABEL).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

AGENT = r'''
"""Stand-in for llm-serving's examples/start_agent.py (serving-tuner tests)."""
import argparse, multiprocessing as mp, os, signal, socket, sys, time
import yaml

FAULT = os.environ.get("STANDIN_FAULT", "")
OOM_LINES = [
    "[ERROR] DEVICE(4242,ffff,python):2024-07-01-10:00:00.000.000 [mindspore/ccsrc/plugin/device/ascend/hal/device/"
    "ascend_memory_adapter.cc:120] MallocStaticDevMem] Device(id:0) memory isn't enough and alloc failed, "
    "kernel name: kernel_graph_0, alloc size: 8589934592B.",
    "EL0004: Failed to allocate memory.",
    "        Possible Cause: Available memory is insufficient.",
    "        TraceBack (most recent call last):",
    "        Call rtMalloc fail, purpose:feature map, type = 2, size:8589934592, device_id:0",
]


def oom():
    print("\n".join(OOM_LINES), file=sys.stderr, flush=True)
    raise RuntimeError("Allocate memory failed")


def agent(i, ip, port, queue):
    if FAULT == "oom_in_agent":
        oom()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((ip, port))
    server.listen(5)
    if FAULT == "port_in_use":
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).bind((ip, port))
    queue.put(i)
    print("start agent socket server in rank{}".format(i), flush=True)
    server.settimeout(0.5)
    parent = os.getppid()
    while os.getppid() == parent:  # the real agents also leave once their launcher has gone
        try:
            conn, _ = server.accept()
            conn.close()
        except socket.timeout:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--task", default=1, type=int)
    args = ap.parse_args()
    with open(args.config) as f:
        sc = yaml.safe_load(f)["serving_config"]
    print("load yaml sucess!", flush=True)
    if FAULT == "oom_at_start":
        oom()
    if FAULT == "early_exit":
        sys.exit(0)
    if FAULT == "hang":
        while True:
            time.sleep(1)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=agent, args=(i, sc.get("agent_ip", "localhost"), p, queue))
             for i, p in enumerate(sc["agent_ports"])]
    for p in procs:
        p.start()

    def stop(*_):
        for p in procs:  # reap them: nothing of ours may outlive the launcher
            p.join(5)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in procs:
        print("agent : %f started" % queue.get(), flush=True)
    print("all agents started", flush=True)
    for p in procs:
        p.join()


main()
'''

SERVER = r'''
"""Stand-in for llm-serving's examples/server_app_post.py: the embedded engine behind the same log lines."""
import argparse, json, os, signal, socket, subprocess, sys, time, urllib.request
import yaml

FAULT = os.environ.get("STANDIN_FAULT", "")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return json.loads(r.read())
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    with open(args.config) as f:
        sc = yaml.safe_load(f)["serving_config"]
    port = sc["server_port"]
    print("server port is: ", port, flush=True)
    if FAULT == "server_crash":
        raise RuntimeError("stand-in: LLMServer could not be built")
    for p in sc["agent_ports"]:  # llm-serving's Worker connects to every agent (5 s timeout)
        socket.create_connection((sc.get("agent_ip", "localhost"), p), timeout=5).close()
    engine = subprocess.Popen([sys.executable, "-m", "serving.engine.server", "--config", args.config,
                               "--host", "127.0.0.1", "--port", str(port)])

    def stop(*_):
        engine.terminate()
        try:
            engine.wait(10)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    base = "http://127.0.0.1:%d" % port
    while get(base + "/health") is None:
        if engine.poll() is not None:
            sys.exit(engine.returncode)
        time.sleep(0.05)
    print("INFO:     Started server process [%d]" % os.getpid())
    print("INFO:     Application startup complete.")
    print("INFO:     Uvicorn running on %s (Press CTRL+C to quit)" % base, flush=True)
    crash_after = int(os.environ.get("STANDIN_CRASH_AFTER", "5"))
    while engine.poll() is None:
        if FAULT == "crash_mid_replay" and ((get(base + "/metrics") or {}).get("requests_total", 0) >= crash_after):
            engine.kill()
            engine.wait()
            print("Traceback (most recent call last):\n  File \"server_app_post.py\", line 1, in <module>\n"
                  "RuntimeError: stand-in: predict failed, error304: generation task stop abnormally!", flush=True)
            sys.exit(1)
        time.sleep(0.05)
    sys.exit(engine.returncode)


main()
'''

NPU_SMI = r'''
import os, sys

USAGES = """        NPU ID                         : {npu}
        Chip Count                     : 1

        DDR Capacity(MB)               : 0
        DDR Usage Rate(%)              : 0
        DDR Hugepages Total(page)      : 0
        DDR Hugepages Usage Rate(%)    : 0
        HBM Capacity(MB)               : 32768
        HBM Usage Rate(%)              : {hbm}
        Aicore Usage Rate(%)           : {aicore}
        Aivector Usage Rate(%)         : NA
        Aicpu Usage Rate(%)            : 0
        Ctrlcpu Usage Rate(%)          : 6
        DDR Bandwidth Usage Rate(%)    : 0
        HBM Bandwidth Usage Rate(%)    : 12
        Chip ID                        : 0
"""
WATCH = ("NpuID(Idx)  ChipId(Idx) Pwr(W)      Temp(C)     AI Core(%)  AI Cpu(%)   Ctrl Cpu(%) Memory(%)   Memory BW(%)\n"
         + "".join("{npu:<12d}0           90.{i}        34          {aicore:<12}0           2           5           0\n"
                   .format(npu=0, i=i, aicore=a) for i, a in enumerate([0, 57, 83])))
POWER = """        NPU ID                         : {npu}
        Chip Count                     : 1

        {label:<31s}: {power}
        Chip ID                        : 0
"""
args = sys.argv[1:]
npu = int(args[args.index("-i") + 1]) if "-i" in args else 0
if npu >= int(os.environ.get("STANDIN_NPU_COUNT", "8")):
    print("Error: the npu id is invalid.")
    sys.exit(255)
if args[:3] == ["info", "-t", "usages"]:
    print(USAGES.format(npu=npu, aicore=os.environ.get("STANDIN_AICORE", "57"), hbm=os.environ.get("STANDIN_HBM", "30")))
elif args[:3] == ["info", "-t", "power"]:
    print(POWER.format(npu=npu, power=os.environ.get("STANDIN_POWER", "90.5"),
                       label=os.environ.get("STANDIN_POWER_LABEL", "NPU Real-time Power(W)")))
elif args[:2] == ["info", "watch"]:
    print(WATCH, end="")
else:
    print("Usage: npu-smi info [-t TYPE] [-i ID] | npu-smi info watch [-i ID]")
    sys.exit(1)
'''

MODEL_YAML = """# mindformers LLaMA-2-7B predict config (stand-in)
context:
  mode: 0                       # 0--Graph Mode
  device_target: "Ascend"
  max_device_memory: "28GB"
  device_id: 0

model:
  model_config:
    type: LlamaConfig
    batch_size: 1 # add for increase predict
    seq_length: 4096
    hidden_size: 4096
    num_layers: 32
    num_heads: 32
    compute_dtype: "float16"
    use_past: True
    block_size: 16
    num_blocks: 1024            # KV pages on the device
    is_dynamic: True
  arch:
    type: LlamaForCausalLM
"""
MODEL_CFG_PATH = "checkpoint_download/llama/predict_llama2_7b.yaml"


@dataclass
class StandIn:
    root: Path          # the llm-serving checkout (llm_serving.root)
    bin: Path           # holds npu-smi
    model_yaml: Path


def build_standin(tmp: Path) -> StandIn:
    root = Path(tmp) / "llm-serving"
    (root / "examples").mkdir(parents=True, exist_ok=True)
    (root / "examples" / "start_agent.py").write_text(AGENT)
    (root / "examples" / "server_app_post.py").write_text(SERVER)
    model_yaml = root / MODEL_CFG_PATH
    model_yaml.parent.mkdir(parents=True, exist_ok=True)
    model_yaml.write_text(MODEL_YAML)
    bin_dir = Path(tmp) / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "npu-smi"
    smi.write_text(f"#!{sys.executable}\n{NPU_SMI}")
    smi.chmod(0o755)
    return StandIn(root, bin_dir, model_yaml)


def write_base_config(project_root: Path, name: str = "standin_tiny.yaml") -> str:
    """A small base config (fast tiny engine) that names the mindformers yaml like the real one.
    Backend 'ge' with seq_type 'dyn': on kbk + PA llm-serving needs 'static' (prompts padded to
    seq_length), which would make the stand-in's tiny engine pad every prefill to 1024 tokens."""
    from serving.config.render import render
    out = Path(project_root) / "configs" / "llama" / name
    render(Path(project_root) / "configs" / "llama" / "tiny_llama_pa.yaml",
           {"model_config.seq_type": "dyn", "model_config.backend": "ge",
            "engine_config.hidden_size": 64, "engine_config.num_layers": 1, "engine_config.num_heads": 4,
            "engine_config.num_kv_heads": 4, "engine_config.intermediate_size": 128}, out)
    text = out.read_text().replace("    backend: 'ge'\n",
                                   f"    backend: 'ge'\n    model_cfg_path: '{MODEL_CFG_PATH}'\n", 1)
    assert "model_cfg_path" in text
    out.write_text(text)
    return f"configs/llama/{name}"
