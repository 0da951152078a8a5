"""Replay-client bench: the one-process Replayer, the sender pool and a bare aiohttp client, against a null server.

  python bench/replay.py [--tokens 16] [--quick] [--workers N] [--server lean|aiohttp]

Three clients: ``replayer`` (serving.replay.Replayer in this process: the path small and slow
plans take), ``pool`` (serving.replay.SenderPool with ``--workers`` sender processes, started
once before the ladder as a running stack starts it once: the path fast plans take) and ``bare``
(aiohttp with no records and no parsing: only what any HTTP client must do). CPU per request
counts the pool's sender processes too.

The null server (bench/_null_server.py, a child process on 127.0.0.1) answers every request at
once with ``max_new_tokens`` lines in llm-serving's stream format and stamps each arrival, so the
lag seen on the wire is measured besides the lag the records hold. ``lean`` (the default) is an
asyncio.Protocol server that costs a fraction of the client's CPU per request; aiohttp's own
server costs about as much as the client, and on 2 cores it would be what the ladder measures.
Its CPU per request is printed with every figure.

Two figures, each client side by side in the same run:
  1. harness overhead per request, one request in flight at a time (goal < 1 ms of CPU);
  2. the highest open-loop (Poisson) rate with p99 send lag < 5 ms, on the records and on the
     wire, and every request completed (goal >= 2,000 req/s on 2 cores); the client's read lag
     (its event loop waking late, docs/metrics.md) is printed beside it.
The machine may be shared: the load average is printed beside each rate. Bounded: a fixed rate
ladder, a deadline on every run, a client's ladder ends after two rates in a row over 25 ms p99
(the capacity search's ``max_send_lag``, also reported); ~2-3 min.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time

import _common  # noqa: F401  (puts the project on sys.path)
import _null_server
from _common import median, pct, table, run_recorded

import aiohttp
import numpy as np
import psutil

from serving.replay import LLMServingProtocol, ReplayOptions, Replayer, SenderPool
from serving.replay.client import run_loop
from serving.workload import TraceRequest

RATES = (250, 500, 1000, 1500, 2000, 3000, 4000)
LAG_GOAL = 5e-3
#: the capacity search's default capacity.max_send_lag: over it a trial fails as client_overloaded
LAG_CAPACITY = 25e-3
GOAL_RATE = 2000


async def arrivals(url: str) -> dict[int, float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/arrivals") as r:
        return {i: t for i, t in await r.json()}


def make_plan(offsets, tokens: int) -> list[tuple[float, TraceRequest]]:
    return [(float(o), TraceRequest(i, f"{i} w w w", tokens, 4)) for i, o in enumerate(offsets)]


def rows_of(recs) -> list[tuple]:
    return [(r.index, r.scheduled, r.sent, r.done if r.ok else None) for r in recs]


async def run_replayer(url: str, plan, deadline: float, pool: SenderPool):
    rp = Replayer(url, LLMServingProtocol(), ReplayOptions(request_timeout=deadline))
    recs = await rp.run(plan, deadline=deadline)
    return rp.t0, rows_of(recs), rp.read_lags


async def run_pool(url: str, plan, deadline: float, pool: SenderPool):
    """Blocking inside (it waits on its sender processes), which is all this bench needs."""
    recs = pool.replay(url, LLMServingProtocol(), ReplayOptions(request_timeout=deadline), plan, deadline=deadline)
    return pool.t0, rows_of(recs), pool.read_lags


async def run_bare(url: str, plan, deadline: float, pool: SenderPool):
    """Same requests, same schedule, one dispatcher: only what any HTTP client must do."""
    rows = []
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:
        t0 = time.monotonic()

        async def one(i: int, off: float, req: TraceRequest) -> None:
            sent = time.monotonic() - t0
            body = {"inputs": req.prompt, "parameters": {"max_new_tokens": req.output_len}, "stream": True}
            done = None
            try:
                async with s.post(url + "/models/llama2/generate_stream", json=body) as r:
                    async for _ in r.content:
                        pass
                done = time.monotonic() - t0
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            rows.append((i, off, sent, done))

        tasks = []
        for i, (off, req) in enumerate(plan):
            delay = off - (time.monotonic() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, off, req)))
        await asyncio.wait_for(asyncio.gather(*tasks), deadline)
    return t0, rows, []


CLIENTS = {"replayer": run_replayer, "pool": run_pool, "bare": run_bare}


def cpu_s(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def measure(client: str, url: str, plan, deadline: float, pool: SenderPool, server: psutil.Process) -> dict:
    senders = [psutil.Process()] + ([psutil.Process(p) for p in pool.pids] if client == "pool" else [])
    cpu, srv = cpu_s(senders), cpu_s([server])
    t0, rows, read_lags = run_loop(CLIENTS[client](url, plan, deadline, pool))
    cpu, srv = cpu_s(senders) - cpu, cpu_s([server]) - srv
    wire = asyncio.run(arrivals(url))
    ok = [r for r in rows if r[3] is not None]
    return {"cpu_ms_per_req": 1e3 * cpu / len(plan), "server_ms_per_req": 1e3 * srv / len(plan),
            "e2e_ms": 1e3 * median(d - s for _, _, s, d in ok),
            "lag_p99_ms": 1e3 * pct([s - o for _, o, s, _ in rows if s is not None], 99),
            "wire_p99_ms": 1e3 * pct([wire[i] - t0 - o for i, o, _, _ in rows if i in wire], 99),
            "read_p99_ms": 1e3 * pct(read_lags, 99),   # the client's loop waking late (docs/metrics.md)
            "ok": len(ok), "n": len(plan)}


def load() -> float:
    return os.getloadavg()[0]


def overhead(url: str, tokens: int, n: int, reps: int, pool, server) -> None:
    print(f"\n1. per-request harness overhead: {n} requests 5 ms apart (one in flight), "
          f"{tokens} tokens each, {reps} alternating repetitions, medians; load {load():.1f}")
    plan = make_plan(np.arange(n) * 5e-3, tokens)
    res: dict[str, list[dict]] = {c: [] for c in CLIENTS}
    for _ in range(reps):
        for c in res:
            res[c].append(measure(c, url, plan, 30.0, pool, server))
    keys = ("cpu_ms_per_req", "e2e_ms", "server_ms_per_req")
    med = {c: {k: median(r[k] for r in rs) for k in keys} for c, rs in res.items()}
    table(["client", "client CPU ms/req", "send->done ms", "server CPU ms/req"],
          [[c, m["cpu_ms_per_req"], m["e2e_ms"], m["server_ms_per_req"]] for c, m in med.items()])
    rp, bare = med["replayer"], med["bare"]
    print(f"replayer CPU per request {rp['cpu_ms_per_req']:.3f} ms (bare aiohttp {bare['cpu_ms_per_req']:.3f} ms, "
          f"x{rp['cpu_ms_per_req'] / bare['cpu_ms_per_req']:.2f}) -> goal < 1 ms: "
          f"{'MET' if rp['cpu_ms_per_req'] < 1 else 'MISSED'}; load {load():.1f}")


def sweep(url: str, tokens: int, seconds: float, reps: int, seed: int, pool, server) -> None:
    print(f"\n2. open-loop rate ladder: Poisson arrivals, {seconds:g} s per run, {tokens} tokens, {reps} alternating "
          f"runs per rate and client (median of their p99s); sustained = p99 send lag < {LAG_GOAL * 1e3:g} ms "
          f"on the records and on the wire, every request completed")
    best = {c: 0 for c in CLIENTS}
    best_load = {c: float("nan") for c in CLIENTS}
    kept = {c: 0 for c in CLIENTS}          # highest rate within LAG_CAPACITY
    misses = {c: 0 for c in CLIENTS}
    live = set(CLIENTS)
    rows = []
    for rate in RATES:
        n = max(200, int(rate * seconds))
        offsets = np.concatenate([[0.0], np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n - 1))])
        plan = make_plan(offsets, tokens)
        runs: dict[str, list[dict]] = {c: [] for c in CLIENTS if c in live}
        for _ in range(reps):
            for c, rs in runs.items():
                rs.append(measure(c, url, plan, seconds + 20, pool, server))
        now = load()
        for c, rs in runs.items():
            lag, wire = median(r["lag_p99_ms"] for r in rs), median(r["wire_p99_ms"] for r in rs)
            ok = min(r["ok"] for r in rs)
            good = ok == n and max(lag, wire) < LAG_GOAL * 1e3
            rows.append([rate, c, lag, wire, median(r["read_p99_ms"] for r in rs), f"{ok}/{n}",
                         median(r["cpu_ms_per_req"] for r in rs),
                         median(r["server_ms_per_req"] for r in rs), "yes" if good else "no", now])
            if good:
                best[c], best_load[c] = rate, now
            if ok == n and max(lag, wire) < LAG_CAPACITY * 1e3:
                kept[c] = rate
            # bounded: a client's ladder ends after two rates in a row over LAG_CAPACITY (one may be noise)
            misses[c] = 0 if ok == n and max(lag, wire) < LAG_CAPACITY * 1e3 else misses[c] + 1
            if misses[c] == 2:
                live.discard(c)
        if not live:
            break
    table(["req/s", "client", "lag p99 ms", "wire p99 ms", "read lag p99 ms", "completed", "CPU ms/req",
           "server ms/req", "sustained", "load"], rows)
    cpu = {c: median(r[6] for r in rows if r[1] == c) for c in CLIENTS}
    print("CPU-bound ceiling per core used (1 / median client CPU per request): "
          + ", ".join(f"{c} {1e3 / cpu[c]:.0f} req/s" for c in CLIENTS))
    print(f"highest rate with p99 send lag < {LAG_GOAL * 1e3:g} ms: "
          + ", ".join(f"{c} {best[c]} req/s (load {best_load[c]:.1f})" for c in CLIENTS))
    print(f"highest rate with p99 send lag < {LAG_CAPACITY * 1e3:g} ms (capacity.max_send_lag): "
          + ", ".join(f"{c} {kept[c]} req/s" for c in CLIENTS))
    top = max(best["replayer"], best["pool"])
    print(f"GOAL >= {GOAL_RATE} req/s at p99 send lag < {LAG_GOAL * 1e3:g} ms on {os.cpu_count()} cores: "
          f"{'MET' if top >= GOAL_RATE else 'MISSED'} (best {top} req/s; bare aiohttp {best['bare']} req/s; "
          f"load average now {load():.1f})")


def main() -> int:
    global RATES
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=16, help="streamed tokens per response")
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each open-loop run")
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer requests and rates")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="sender processes of the pool")
    ap.add_argument("--server", choices=_null_server.KINDS, default="lean", help="null server kind")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_null_server.serve, args=(child, args.server), daemon=True)
    server.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("null server did not report its port within 30 s")
        url = f"http://127.0.0.1:{parent.recv()}"
        print(f"null server ({args.server}) {url} (pid {server.pid}); client pid {os.getpid()}; "
              f"{os.cpu_count()} CPUs, load average {load():.1f}")
        with SenderPool(args.workers) as pool:
            print(f"sender pool: {pool.size} processes {pool.pids}, started once in {pool.start_s:.2f} s "
                  "(every replay after reuses them)")
            if args.quick:
                RATES = RATES[:2]
            srv = psutil.Process(server.pid)
            overhead(url, args.tokens, 60 if args.quick else 300, 1 if args.quick else 3, pool, srv)
            sweep(url, args.tokens, 0.3 if args.quick else args.seconds, 1 if args.quick else 3, 0, pool, srv)
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()  # our own child, by its handle
            server.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_recorded("replay", main))
