"""Replay-client bench: serving.replay.Replayer against a null server, beside a bare aiohttp client.

  python bench/replay.py [--tokens 16] [--quick] [--workers N]

Three clients: ``replayer`` (one process: the path small and slow plans take), ``replayer-mp``
(serving.replay.ParallelReplayer, ``--workers`` sender processes: the path fast plans take) and
``bare``. CPU per request counts the sender processes too.

The null server (a child process, 127.0.0.1 port 0) answers every request at once with
``max_new_tokens`` lines in llm-serving's stream format and stamps each arrival, so the lag
seen on the wire is measured besides the lag the Replayer records. Two figures, each side
by side with a bare client (same HTTP work, no records, no JSON parsing) in the same run:
  1. harness overhead per request: client CPU per request and send-to-done time, one request
     in flight at a time (goal < 1 ms);
  2. the highest open-loop (Poisson) rate whose p99 send lag stays < 5 ms, on the Replayer's
     records and on the wire, with every request completed (goal >= 1,000 req/s).
Bounded: a fixed rate ladder, a deadline on every run; it stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import time

import _common  # noqa: F401  (puts the project on sys.path)
from _common import median, pct, table

import aiohttp
import numpy as np
from aiohttp import web

from serving.engine import api
from serving.replay import LLMServingProtocol, ParallelReplayer, ReplayOptions, Replayer
from serving.replay.client import run_loop
from serving.workload import TraceRequest

RATES = (250, 500, 750, 1000, 1500, 2000, 3000, 4000)
LAG_GOAL = 5e-3


# -- null server (child process) ------------------------------------------------------------
def _null_server(conn) -> None:
    arrivals: list[tuple[int, float]] = []
    bodies: dict[int, bytes] = {}

    def body(n: int) -> bytes:
        if n not in bodies:
            lines = [api.stream_line(" w", 5, None, i + 1) for i in range(n)]
            bodies[n] = b"".join(lines) + api.stream_line("w" * n, None, "length", n)
        return bodies[n]

    async def stream(request: web.Request) -> web.StreamResponse:
        t = time.monotonic()
        req = await request.json()
        arrivals.append((int(req["inputs"].split(None, 1)[0]), t))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(body(int(req["parameters"]["max_new_tokens"])))
        return resp

    async def take_arrivals(request: web.Request) -> web.Response:
        out = list(arrivals)
        arrivals.clear()
        return web.json_response(out)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/models/llama2/generate_stream", stream)
        app.router.add_get("/arrivals", take_arrivals)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # parent says stop

    asyncio.run(main())


async def arrivals(url: str) -> dict[int, float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/arrivals") as r:
        return {i: t for i, t in await r.json()}


# -- the two clients ------------------------------------------------------------------------
def make_plan(offsets, tokens: int) -> list[tuple[float, TraceRequest]]:
    return [(float(o), TraceRequest(i, f"{i} w w w", tokens, 4)) for i, o in enumerate(offsets)]


async def run_replayer(url: str, plan, deadline: float):
    rp = Replayer(url, LLMServingProtocol(), ReplayOptions(request_timeout=deadline))
    recs = await rp.run(plan, deadline=deadline)
    rows = [(r.index, r.scheduled, r.sent, r.done if r.ok else None) for r in recs]
    return rp.t0, rows


async def run_bare(url: str, plan, deadline: float):
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
    return t0, rows


WORKERS = 2


async def run_parallel(url: str, plan, deadline: float):
    """Blocking inside (it waits on its sender processes), which is all this bench needs."""
    rp = ParallelReplayer(url, LLMServingProtocol(), ReplayOptions(request_timeout=deadline), workers=WORKERS)
    recs = rp.run(plan, deadline=deadline)
    return rp.t0, [(r.index, r.scheduled, r.sent, r.done if r.ok else None) for r in recs]


CLIENTS = {"replayer": run_replayer, "replayer-mp": run_parallel, "bare": run_bare}


def cpu_now() -> float:
    """CPU seconds of this process and its ended children (the sender processes)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def measure(client: str, url: str, plan, deadline: float) -> dict:
    cpu = cpu_now()
    t0, rows = run_loop(CLIENTS[client](url, plan, deadline))
    cpu = cpu_now() - cpu
    wire = asyncio.run(arrivals(url))
    ok = [r for r in rows if r[3] is not None]
    return {"cpu_ms_per_req": 1e3 * cpu / len(plan),
            "e2e_ms": 1e3 * median(d - s for _, _, s, d in ok),
            "lag_p99_ms": 1e3 * pct([s - o for _, o, s, _ in rows if s is not None], 99),
            "wire_p99_ms": 1e3 * pct([wire[i] - t0 - o for i, o, _, _ in rows if i in wire], 99),
            "ok": len(ok), "n": len(plan)}


def overhead(url: str, tokens: int, n: int, reps: int) -> None:
    print(f"\n1. per-request harness overhead: {n} requests 5 ms apart (one in flight), "
          f"{tokens} tokens each, {reps} alternating repetitions, medians")
    plan = make_plan(np.arange(n) * 5e-3, tokens)
    # replayer-mp is the path of fast plans only: its sender processes' start-up is not a per-request cost
    res: dict[str, list[dict]] = {c: [] for c in ("replayer", "bare")}
    for _ in range(reps):
        for c in res:
            res[c].append(measure(c, url, plan, 30.0))
    med = {c: {k: median(r[k] for r in rs) for k in ("cpu_ms_per_req", "e2e_ms")} for c, rs in res.items()}
    table(["client", "client CPU ms/req", "send->done ms"], [[c, m["cpu_ms_per_req"], m["e2e_ms"]] for c, m in med.items()])
    rp, bare = med["replayer"], med["bare"]
    print(f"replayer/bare: CPU x{rp['cpu_ms_per_req'] / bare['cpu_ms_per_req']:.2f}, "
          f"send->done x{rp['e2e_ms'] / bare['e2e_ms']:.2f}; replayer CPU per request "
          f"{rp['cpu_ms_per_req']:.3f} ms ({rp['cpu_ms_per_req'] - bare['cpu_ms_per_req']:+.3f} ms over bare) "
          f"-> goal < 1 ms: {'MET' if rp['cpu_ms_per_req'] < 1 else 'MISSED'}")


def sweep(url: str, tokens: int, seconds: float, reps: int, seed: int) -> None:
    print(f"\n2. open-loop rate ladder: Poisson arrivals, {seconds:g} s per run, {tokens} tokens, {reps} alternating "
          f"runs per rate and client (median of their p99s); sustained = p99 send lag < {LAG_GOAL * 1e3:g} ms "
          f"on the records and on the wire, every request completed")
    best = {c: 0 for c in CLIENTS}
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
                rs.append(measure(c, url, plan, seconds + 20))
        for c, rs in runs.items():
            lag, wire = median(r["lag_p99_ms"] for r in rs), median(r["wire_p99_ms"] for r in rs)
            ok = min(r["ok"] for r in rs)
            good = ok == n and max(lag, wire) < LAG_GOAL * 1e3
            rows.append([rate, c, lag, wire, f"{ok}/{n}", median(r["cpu_ms_per_req"] for r in rs),
                         "yes" if good else "no"])
            best[c] = rate if good else best[c]
            misses[c] = 0 if good else misses[c] + 1
            if misses[c] == 2:  # bounded: two failing rates in a row end a client's ladder (one may be noise)
                live.discard(c)
        if not live:
            break
    table(["req/s", "client", "lag p99 ms", "wire p99 ms", "completed", "CPU ms/req", "sustained"], rows)
    cpu = {c: median(r[5] for r in rows if r[1] == c) for c in CLIENTS}
    print("CPU-bound ceiling, one core (1 / median client CPU per request; robust to other load): "
          + ", ".join(f"{c} {1e3 / cpu[c]:.0f} req/s" for c in CLIENTS))
    ratio = {c: best[c] / best["bare"] if best["bare"] else float("nan") for c in CLIENTS}
    top = max(best["replayer"], best["replayer-mp"])
    print("highest sustained rate: " + ", ".join(f"{c} {best[c]} req/s (/bare {ratio[c]:.2f})" for c in CLIENTS)
          + f" -> goal >= 2000 req/s: {'MET' if top >= 2000 else 'MISSED'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=16, help="streamed tokens per response")
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each open-loop run")
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer requests and rates")
    ap.add_argument("--workers", type=int, default=2, help="sender processes of replayer-mp")
    args = ap.parse_args()
    global WORKERS
    WORKERS = args.workers
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_null_server, args=(child,), daemon=True)
    server.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("null server did not report its port within 30 s")
        url = f"http://127.0.0.1:{parent.recv()}"
        print(f"null server {url} (pid {server.pid}); client pid {mp.current_process().pid}")
        if args.quick:
            global RATES
            RATES = RATES[:2]
        overhead(url, args.tokens, 60 if args.quick else 300, 1 if args.quick else 3)
        sweep(url, args.tokens, 0.3 if args.quick else args.seconds, 1 if args.quick else 3, seed=0)
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()  # our own child, by its handle
            server.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
