"""Small traces of every format, generated (no file is shipped for tests)."""
from __future__ import annotations

import csv
import json
from pathlib import Path


def refused(path: Path, text: str, match: str) -> str:
    """``text`` written to ``path`` is refused by load_trace with one line matching ``match``; that line."""
    import pytest

    from serving.config.errors import ConfigError
    from tuner.workload.trace import load_trace
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_trace(path)
    assert "\n" not in str(err.value)
    return str(err.value)


def lines(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def project(tmp: Path) -> Path:
    return lines(tmp / "own.jsonl", [{"prompt": "say hi to bob", "output_len": 5},
                                     {"prompt": "count to three", "output_len": 7, "timestamp": 0.5}])


def vllm(tmp: Path) -> Path:
    return lines(tmp / "vllm.jsonl", [{"prompt": "What is the capital of India?", "output_tokens": 10},
                                      {"prompt": "What is the capital of Iran?"}])


def alpaca_array(tmp: Path) -> Path:
    recs = [{"instruction": "Give three tips", "input": "", "output": "Eat well . Sleep . Move ."},
            {"instruction": "Translate", "input": "bonjour", "output": "hello"},
            {"instruction": "Say nothing", "input": "", "output": "   "}]
    (tmp / "alpaca.json").write_text(json.dumps(recs, indent=2))
    return tmp / "alpaca.json"


def alpaca_lines(tmp: Path) -> Path:
    return lines(tmp / "alpaca.jsonl", [{"instruction": "Say hi", "input": "to Bob", "output": "Hi Bob ."}])


def sharegpt(tmp: Path) -> Path:
    recs = [{"id": "a", "conversations": [{"from": "human", "value": "hello there friend"},
                                          {"from": "gpt", "value": "hi how are you"},
                                          {"from": "human", "value": "fine"}, {"from": "gpt", "value": "good"}]},
            {"id": "b", "conversations": [{"from": "human", "value": "only one turn"}]},
            {"id": "c", "conversations": [{"from": "system", "value": "be brief"},
                                          {"from": "human", "value": "why is the sky blue"},
                                          {"from": "gpt", "value": "scattering"}]}]
    (tmp / "sharegpt.json").write_text(json.dumps(recs))
    return tmp / "sharegpt.json"


def mooncake(tmp: Path) -> Path:
    return lines(tmp / "mooncake.jsonl", [
        {"timestamp": 0, "input_length": 700, "output_length": 12, "hash_ids": [11, 12]},
        {"timestamp": 250, "input_length": 600, "output_length": 3, "hash_ids": [11, 13]},
        {"timestamp": 1000, "input_length": 30, "output_length": 8, "hash_ids": [14]}])


def azure(tmp: Path) -> Path:
    rows = [("2023-11-16 18:15:46.6805900", 374, 44), ("2023-11-16 18:15:50.9951690", 396, 109),
            ("2023-11-16 18:15:51.0000000", 879, 0), ("2023-11-16 18:15:52.2500000", 120, 20)]
    with open(tmp / "azure.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        w.writerows(rows)
    return tmp / "azure.csv"


def burstgpt(tmp: Path) -> Path:
    rows = [(5, "ChatGPT", 472, 18, 490, "Conversation log"), (45, "ChatGPT", 1087, 0, 1087, "Conversation log"),
            (118, "GPT-4", 417, 276, 693, "API log")]
    with open(tmp / "burst.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"])
        w.writerows(rows)
    return tmp / "burst.csv"


ALL = {"jsonl": project, "vllm": vllm, "alpaca": alpaca_array, "sharegpt": sharegpt, "mooncake": mooncake,
       "azure": azure, "burstgpt": burstgpt}
