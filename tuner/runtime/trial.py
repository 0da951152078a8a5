"""One trial: render the config, check it, launch the stack, replay the trace, score, stop.

Every way a trial can go wrong ends in a TrialOutcome with a failure class and
the log tail; nothing here raises for a bad configuration or a crashing stack.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from serving.config.errors import ConfigError
from serving.replay import ReplayOptions, StopCondition
from serving.stacks import LaunchError, LaunchSpec, failures, get_stack, readback
from serving.workload import RequestRecord
from tuner.runtime import capacity
from tuner.runtime.bound import unloaded_service_times
from tuner.runtime.context import TrialContext
from tuner.runtime.client_check import CLIENT_OVERLOADED, behind, is_burst, kept_up
from tuner.runtime.metrics import energy, records_frame, score
from tuner.runtime.phases import Phases
from tuner.space.spec import StudySpace


@dataclass
class TrialOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    fail_class: str | None = None
    fail_detail: str = ""
    log_tail: str = ""
    records: list[RequestRecord] = field(default_factory=list)
    more_replays: list[dict[str, Any]] = field(default_factory=list)   # run_trial(replays=N): replays 2..N

    @property
    def launched(self) -> bool:
        """Whether a launch was tried: run_trial times the start-up of every launch (``startup_s``), and
        a configuration its checks refuse never gets that far."""
        return "startup_s" in self.metrics

    @property
    def ok(self) -> bool:
        return self.fail_class is None


def _fail(cls: str, detail: str, tail: str = "", **kw) -> TrialOutcome:
    return TrialOutcome(fail_class=cls, fail_detail=detail, log_tail=tail[-4000:], **kw)


def _classify_replay(records: list[RequestRecord], alive: bool, tail: str, died: str | None = None) -> tuple[str, str]:
    errors = [r.error for r in records if r.error]
    if not alive:
        return (failures.classify_log(tail, failures.CRASH_DURING_REPLAY),
                "stack exited during the replay" + (f": {died}" if died else ""))
    if errors and all(e.startswith(("timeout", "cancelled")) for e in errors):
        return failures.HANG, f"{len(errors)} requests got no complete response in time"
    return failures.BAD_RESPONSE, f"{len(errors)} requests failed; first: {errors[0]}"


class HostFailure(ConfigError):
    """The host cannot start the stack (a module its interpreter lacks, an option the installed stack
    does not know): no configuration would start, so the study stops here instead of teaching the
    sampler a false infeasible region."""


LAUNCH_TRIES = 3   # a port another process took between free_ports and the stack's bind: fresh ports


def launch(stack, spec: LaunchSpec):
    """``stack.launch(spec)``, again on fresh ports when a port was taken meanwhile; HostFailure when the
    start failed for the host's sake (serving.stacks.failures.host_cause)."""
    for attempt in range(1, LAUNCH_TRIES + 1):
        try:
            try:
                return stack.launch(spec)
            except ConfigError as err:   # a stack refusing this configuration: the trial fails, the study goes on
                if isinstance(err, HostFailure):
                    raise
                raise LaunchError(failures.CONFIG_REJECTED, str(err)) from None
        except LaunchError as err:
            cause = failures.host_cause(err.log_tail) if err.fail_class == failures.CRASH_AT_START else None
            if cause:
                raise HostFailure(f"the host cannot start the {stack.name} stack, whatever its configuration: "
                                  f"{cause} ({err.detail.split(':', 1)[0]}; log in {spec.run_dir})",
                                  key=stack.name) from None
            if err.fail_class != failures.PORT_IN_USE or attempt == LAUNCH_TRIES:
                raise
            for log in Path(spec.run_dir).glob("*.log"):   # the next try's log starts clean (its watch reads it)
                log.rename(log.with_name(f"{log.name}.try{attempt}"))
    raise AssertionError("unreachable")


def replay_options(space: StudySpace) -> ReplayOptions:
    return ReplayOptions(stream=space.load.stream, parameters=dict(space.load.parameters),
                         request_timeout=space.load.request_timeout)


def run_trial(ctx: TrialContext, params: dict[str, Any], stop: StopCondition | None = None,
              replays: int = 1) -> TrialOutcome:
    """suggested params -> render -> check -> launch -> replay -> score; the stack is always stopped.

    ``stop`` may end the replay early (early stopping). ``replays`` > 1 replays the plan again on the
    same stack (bench/groundtruth.py: vLLM's launch is the slow part); the outcome is the first
    replay's, the others' scores are in ``more_replays``."""
    space, root, run_dir, plan = ctx.space, ctx.root, ctx.run_dir, ctx.plan
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = get_stack(space.backend)
    fmt = stack.config_format
    config_path = run_dir / "config.yaml"
    options = space.backend_options()
    try:
        fmt.render(root / space.base_config, params, config_path)
        cfg = fmt.load(config_path)
    except ConfigError as err:
        return _fail(failures.CONFIG_REJECTED, str(err))
    max_len = max(r.total_len for _, r in plan)
    broken = stack.check(cfg, max_len, options)
    if broken:
        return _fail(failures.CONFIG_REJECTED, "; ".join(broken))
    phases = Phases()      # where the trial's time went (tuner.runtime.phases)
    spec = LaunchSpec(config_path, run_dir, space.timeouts.ready, ctx.device_id, options, ctx.env(), cfg,
                      stack.parse_options(options))   # typed once: the stack's launch reads both
    try:
        with phases("startup"):
            running = launch(stack, spec)   # relaunched on fresh ports when one was taken
        readback.verify(running, config_path, space.param_specs(), run_dir)  # never measured unless applied
    except LaunchError as err:
        return _fail(err.fail_class, err.detail, err.log_tail, metrics=dict(phases.times))
    opts = replay_options(space)
    if space.capacity_search:
        return _capacity_trial(ctx, running, opts, phases)
    try:
        with phases("replay"):
            ctx.launched(running.pgids)
            result = running.replay(plan, opts, ctx.on_request, deadline=space.timeouts.replay, stop=stop)
            records = result.records
            alive = running.whole()
            tail = running.log_tail()
            failed = sum(not r.ok for r in records) / max(len(records), 1)   # score's requests_failed share
            # for arrival_bound/efficiency; a replay that failed fails the trial, and its lone request
            # would only wait out the request timeout again (a hung stack: twice the timeout per trial)
            served = failed <= space.max_failed_fraction
            service = unloaded_service_times(running, plan, records, opts) if served else {}
            more = [_replay_again(running, plan, opts, space, run_dir / f"requests.{k}.csv")
                    for k in range(1, replays)]
    finally:
        with phases("stop"):
            running.stop()
    records_frame(records).to_csv(run_dir / "requests.csv", index=False)
    metrics = with_usage(running, score(records, service, result.read_lags), result.usage, phases)
    burst = is_burst(plan)   # a burst has no schedule to keep: its send lag is not judged
    lagging = behind(metrics, space.capacity, burst)
    metrics |= kept_up([(metrics, burst)], space.capacity)
    if lagging and alive:  # what was measured is the client: never a result of the configuration
        return _fail(CLIENT_OVERLOADED, f"the replay client fell behind: {lagging}", tail, records=records,
                     metrics=metrics, more_replays=more)
    # a stack that lost a process but answered every request kept serving: measured, not crashed
    if not served or (not alive and failed > 0) or math.isnan(metrics["total_time"]):
        cls, detail = _classify_replay(records, alive, tail, running.died)
        return _fail(cls, detail, tail, records=records, metrics=metrics)
    return TrialOutcome(metrics=metrics, records=records, more_replays=more)


def _replay_again(running, plan, opts: ReplayOptions, space: StudySpace, out: Path) -> dict[str, Any]:
    """Another replay of the plan on the running stack, its records kept in ``out``: its score, its
    seconds (``replay_s``), why its client fell behind (``client_behind``, "" when it kept up), judged
    as the first replay's, and what failed as the first replay's failure would say (``fail_detail``,
    "" when no request failed and the stack lived)."""
    t = time.monotonic()
    result = running.replay(plan, opts, deadline=space.timeouts.replay)
    records_frame(result.records).to_csv(out, index=False)
    m = score(result.records, {}, result.read_lags)
    alive = running.alive()
    failed = not alive or any(r.error for r in result.records)
    return m | {"replay_s": time.monotonic() - t, "alive": float(alive),
                "client_behind": behind(m, space.capacity, is_burst(plan)) or "",
                "fail_detail": _classify_replay(result.records, alive, running.log_tail(), running.died)[1]
                if failed else ""}


def with_usage(running, metrics: dict[str, Any], usage: dict[str, float], phases: Phases) -> dict[str, Any]:
    """A replay's scores with what the probes saw, the phase times, energy per token and the stack's
    utilisation figure (its ``utilisation`` probe's mean; NaN for a stack that names none)."""
    out = metrics | usage | phases.times
    out |= energy(usage, out.get("tokens_out", 0.0))
    key = f"{running.utilisation}_mean" if running.utilisation else None
    out["utilisation"] = usage.get(key, float("nan")) if key else float("nan")
    return out


def _capacity_trial(ctx: TrialContext, running, opts: ReplayOptions, phases: Phases) -> TrialOutcome:
    """The rate search on the running stack (tuner.runtime.capacity); the stack is always stopped."""
    space, run_dir = ctx.space, ctx.run_dir
    requests = [r for _, r in ctx.plan]
    found: capacity.CapacityResult | None = None
    search = capacity.CapacitySearch(running, requests, space.slo, space.capacity, opts, space.load.seed,
                                     space.timeouts.replay, ctx.on_request)
    error: capacity.ClientOverloaded | None = None
    try:
        with phases("replay"):
            ctx.launched(running.pgids)
            try:
                found = search.run()
            except capacity.ClientOverloaded as err:
                error = err
            alive = running.whole()
            tail = running.log_tail()
    finally:
        with phases("stop"):
            running.stop()
    probes = search.probes
    frames = [records_frame(p.records).assign(probe=i, rate=p.rate) for i, p in enumerate(probes)]
    if frames:
        import pandas as pd  # lazily, as in records_frame
        pd.concat(frames).to_csv(run_dir / "requests.csv", index=False)
    if not probes:
        return _fail(failures.BAD_RESPONSE, "the capacity search replayed nothing", tail)
    rep = found.best if found else probes[-1]
    metrics = with_usage(running, dict(rep.metrics), rep.usage, phases)
    metrics |= kept_up([(p.metrics, math.isinf(p.rate)) for p in probes], space.capacity)
    if found:
        metrics |= found.metrics()
    else:
        metrics["capacity_probes"] = [p.row() for p in probes]
    if error is not None:
        return _fail(CLIENT_OVERLOADED, str(error), tail, records=rep.records, metrics=metrics)
    if not alive:
        return _fail(failures.classify_log(tail, failures.CRASH_DURING_REPLAY),
                     "stack exited during the capacity search", tail, records=rep.records, metrics=metrics)
    return TrialOutcome(metrics=metrics, records=rep.records)
