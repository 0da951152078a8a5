"""Pre-screening on the simulator and the probe promoted to a full run."""
import math

from tuner.space.compose import load_space
from tuner.runtime.context import TrialContext
from tuner.screening.prescreen import PreScreener, PrescreenSpec, probe_then_full, rank
from tuner.study.run import StudyRun


def params(decode, prefill=1, blocks=256, block_size=16):
    return {"model_config.prefill_batch_size": prefill, "model_config.decode_batch_size": decode,
            "pa_config.num_blocks": blocks, "pa_config.block_size": block_size}


def setup(root, *over):
    space = load_space("pa_batching", root, ["backend=sim", *over])
    return space, StudyRun(space, root, "").plan()


def test_rank_marks_the_fast_configs_promising(project_root):
    space, plan = setup(project_root)
    out = rank(space, project_root, [params(1), params(32, 2), params(16, 2), params(8, blocks=4)], plan,
               PrescreenSpec(top_fraction=0.5))
    assert [s.params["model_config.decode_batch_size"] for s in out][-1] == 8      # failed config last
    assert out[-1].reason.startswith("(num_blocks - 1)") and not out[-1].promising
    by_decode = {s.params["model_config.decode_batch_size"]: s for s in out}
    assert by_decode[1].value > by_decode[32].value and not by_decode[1].promising
    assert sum(s.promising for s in out) == 2


def test_prescreener_lets_the_warm_up_through_then_gates(project_root):
    space, plan = setup(project_root)
    screen = PreScreener(space, project_root, plan, PrescreenSpec(warmup=2, within=0.05))
    assert screen.check(params(32, 2)).promising and screen.check(params(1)).promising   # warm-up
    late = screen.check(params(1))
    assert not late.promising and "within 5%" in late.reason
    assert screen.check(params(32, 2)).promising
    assert set(late.attrs()) == {"prescreen_value", "prescreen_promising", "prescreen_reason"}


def test_probe_is_promoted_only_when_its_prediction_is_close(project_root, tmp_path):
    space, plan = setup(project_root)
    first = probe_then_full(TrialContext(space, project_root, tmp_path / "a", plan), params(16, 2), best=None)
    assert first.promoted and first.outcome.ok and first.factor == 1.0      # sim probing sim: exact
    assert first.outcome.metrics["requests"] == len(plan)
    assert math.isclose(first.predicted, first.outcome.metrics["total_time"], rel_tol=1e-9)
    slow = probe_then_full(TrialContext(space, project_root, tmp_path / "b", plan), params(1), best=first.predicted)
    assert not slow.promoted and slow.outcome.metrics["requests"] < len(plan)
    assert slow.predicted > first.predicted * 1.1
