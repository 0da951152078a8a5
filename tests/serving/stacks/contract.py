"""The promises every stack makes to the tuner, as one test class. A stack's test module
subclasses ``StackContract`` and says how to make a launch spec for it; the same tests then run
on it: it launches, replays a plan with every record complete, names its utilisation among its
probes, stops without leaving a process group, reads back the config it runs with, and refuses an
unknown option at load."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydantic
import pytest

from serving.replay import ReplayOptions
from serving.stacks import LaunchSpec, get_stack, readback
from serving.procs.groups import group_alive
from serving.workload import Plan, TraceRequest


class StackContract:
    backend: str = ""
    #: requests the contract replays, and the output tokens each asks for
    requests: int = 3
    output_len: int = 4

    def make_spec(self, tmp_path: Path) -> LaunchSpec:
        """A launchable spec for this stack (its rendered config and options)."""
        raise NotImplementedError

    #: the tuned keys of the last render: what the read-back is checked on
    tuned: dict[str, Any] = {}

    def render(self, base: Path, params: dict[str, Any], tmp_path: Path) -> Path:
        out = tmp_path / "config.yaml"
        get_stack(self.backend).config_format.render(base, params, out)
        self.tuned = dict(params)
        return out

    def options(self, section: dict[str, Any]) -> dict[str, Any]:
        return get_stack(self.backend).parse_options(section).model_dump()

    def plan(self) -> Plan:
        return Plan([(0.01 * i, TraceRequest(i, "hello there general kenobi", self.output_len, 4))
                     for i in range(self.requests)])

    def test_launch_replay_and_stop(self, tmp_path):
        """Launch, replay: one complete record per request, usage summarised; stop: no group left."""
        spec = self.make_spec(tmp_path)
        running = get_stack(self.backend).launch(spec)
        try:
            assert running.alive()
            # what the stack runs with reads back equal to the trial's config (keys it reports)
            wrong, _unverified = readback.differences(readback.expected_values(spec.config_path, self.tuned),
                                                       running.read_back())
            assert wrong == [], wrong
            result = running.replay(self.plan(), ReplayOptions(request_timeout=60), deadline=120)
            assert len(result.records) == self.requests
            for rec in result.records:
                assert rec.ok, f"request {rec.index} failed: {rec.error}"
                assert rec.n_tokens == self.output_len
                assert rec.sent is not None and rec.first_token is not None and rec.done is not None
                assert rec.sent <= rec.first_token <= rec.done
            # the utilisation names a figure the replay reports: one of the stack's probes where it
            # serves HTTP (the simulator reports its own), or the stack says it has none
            if running.utilisation is not None:
                assert f"{running.utilisation}_mean" in result.usage, sorted(result.usage)
                if get_stack(self.backend).serves_http:
                    assert running.utilisation in {p.name for p in running.probes()}
            pgids = list(running.pgids)
        finally:
            running.stop()
        assert not running.alive()
        assert all(not group_alive(g) for g in pgids), f"process groups left: {pgids}"

    def test_unknown_option_is_refused_at_load(self):
        with pytest.raises(pydantic.ValidationError):
            get_stack(self.backend).parse_options({"no_such_option_anywhere": 1})

    def test_protocol_and_format_are_the_stacks_own(self):
        """Declared by the stack's class, never inherited from another stack's defaults."""
        stack = get_stack(self.backend)
        assert "config_format" in _declared(type(stack)), f"{self.backend} inherits its config format"

    def test_calibration_it_declares_has_what_it_needs(self):
        """`tune calibrate` dispatches on Stack.calibration: each kind needs its own companion."""
        stack = get_stack(self.backend)
        need = {None: True, "steps": stack.steps_route is not None, "replays": bool(stack.calibrated_profile),
                "surrogate": bool(stack.surrogate) and hasattr(get_stack(stack.surrogate or self.backend), "calibrate")}
        assert need[stack.calibration], f"{self.backend}: calibration {stack.calibration!r} without its companion"


def _declared(cls: type) -> set[str]:
    """Attributes a class or one of its bases below Stack itself declares."""
    from serving.stacks.base import Stack
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Stack:
            break
        names.update(vars(klass))
    return names


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
