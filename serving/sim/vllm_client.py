"""The tuner's side of the vLLM surrogate: a worker process in vLLM's interpreter, spoken to in JSON lines.

The worker (serving/sim/vllm_worker.py, protocol in its docstring) imports vLLM, which takes
20-30 s on a shared CPU; building one configuration's scheduler then takes ~0.1 s. So one worker
per interpreter lives as long as the tuner does (``shared``) and simulates every configuration a
pre-screen, warm start or probe asks for; it is ended at exit. Encoding and decoding are here
(:func:`request_message`, :func:`records_of`), so they are tested without vLLM.
"""
from __future__ import annotations

import atexit
import json
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.sim.vllm_steptime import StepTime
from serving.workload import RequestRecord, TraceRequest

WORKER = Path(__file__).with_name("vllm_worker.py")


class SurrogateError(RuntimeError):
    """The worker could not simulate (its one-line reason), or it is gone."""


@dataclass
class VllmSimResult:
    records: list[RequestRecord]
    steps: int
    preemptions: int
    busy: float              # seconds of engine steps


def request_message(engine: dict[str, Any], num_blocks: int, steptime: StepTime,
                    plan: list[tuple[float, TraceRequest]]) -> dict[str, Any]:
    """The ``simulate`` request for ``plan`` (open loop, or closed with the plan's ``concurrency``)."""
    return {"op": "simulate", "engine": engine, "num_blocks": int(num_blocks), "steptime": steptime.as_dict(),
            "requests": [[float(off), r.prompt, r.prompt_len, r.output_len] for off, r in plan],
            "concurrency": getattr(plan, "concurrency", None)}


def records_of(answer: dict[str, Any], plan: list[tuple[float, TraceRequest]]) -> VllmSimResult:
    """The worker's answer as RequestRecords, one per planned request in plan order."""
    if not answer.get("ok"):
        raise SurrogateError(str(answer.get("error", "the worker answered without a reason")))
    rows = answer["records"]
    if len(rows) != len(plan):
        raise SurrogateError(f"the worker answered {len(rows)} records for {len(plan)} requests")
    out = []
    for (off, req), (sent, first, done, times, reason, error) in zip(plan, rows):
        out.append(RequestRecord(req.index, req.prompt_len, req.output_len, off, sent=sent, first_token=first,
                                 done=done, token_times=list(times), n_tokens=len(times), finish_reason=reason,
                                 error=error))
    return VllmSimResult(out, int(answer["steps"]), int(answer.get("preemptions") or 0), float(answer["busy"]))


class VllmSurrogate:
    """One worker process; ``simulate`` is one request and one answer (calls are serialised)."""

    def __init__(self, python: str):
        self.python = python
        self._lock = threading.Lock()
        # stderr goes to a file, not a pipe: vLLM logs a lot there and a full pipe would block it
        self._log = tempfile.TemporaryFile("w+")
        try:
            self.proc = subprocess.Popen([python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, text=True, cwd=str(WORKER.parent), start_new_session=True)
        except OSError as err:
            self._log.close()
            raise SurrogateError(f"the vLLM surrogate's worker could not start with {python!r}: {err}") from None

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.proc.poll() is not None:
                raise SurrogateError(f"the vLLM surrogate's worker ({self.python}) exited with code {self.proc.returncode}")
            try:
                self.proc.stdin.write(json.dumps(msg) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except BrokenPipeError:
                line = ""
        if not line:
            raise SurrogateError(f"the vLLM surrogate's worker ({self.python}) ended without an answer: "
                                 f"{self.log_tail() or '(no output)'}")
        return json.loads(line)

    def log_tail(self) -> str:
        """The worker's last stderr line (why it ended)."""
        self._log.seek(0)
        lines = [x for x in self._log.read().splitlines() if x.strip()]
        return lines[-1].strip() if lines else ""

    def simulate(self, engine: dict[str, Any], num_blocks: int, steptime: StepTime,
                 plan: list[tuple[float, TraceRequest]]) -> VllmSimResult:
        return records_of(self.ask(request_message(engine, num_blocks, steptime, plan)), plan)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()      # our own child, by its handle
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> "VllmSurrogate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SHARED: dict[str, VllmSurrogate] = {}


def shared(python: str) -> VllmSurrogate:
    """The worker of ``python``, started on first use and kept until the tuner exits."""
    sur = _SHARED.get(python)
    if sur is None or sur.proc.poll() is not None:
        sur = _SHARED[python] = VllmSurrogate(python)
    return sur


@atexit.register
def _close_all() -> None:
    for sur in _SHARED.values():
        sur.close()
    _SHARED.clear()
