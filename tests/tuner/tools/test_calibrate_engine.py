"""`tune calibrate` end to end: the real embedded engine measured over HTTP, then refitted from
the step records the run kept (the fitting itself is unit-tested in tests/serving/sim)."""
import json

import numpy as np
import pytest

from serving.sim.profile_io import load_profile
from serving.sim.fit import fit
from tuner.tools.calibrate import STEPS_FILE, collect
from tuner.cli import main


def test_collect_measures_the_engine_and_the_kept_steps_refit_to_the_same_profile(project_root):
    base = project_root / "configs/llama/tiny_llama_pa.yaml"
    runs = project_root / "trials/_calibrate"
    steps, delays = collect(base, runs / "pass0", runs=((2, 2),), prompt_lens=(4, 16), log=lambda _: None)
    kept = json.loads((runs / "pass0/d2_p2" / STEPS_FILE).read_text())
    assert len(kept["steps"]) == len(steps) and kept["delays"] == delays and len(delays) == 6
    decode = [s for s in steps if s["kind"] == "decode"]
    assert {s["bucket"] for s in decode} == {2} and {s["bucket"] for s in steps if s["kind"] == "prefill"} == {2}
    assert sum(s["arrivals"] for s in steps) == 2 * 8 + 64 + 6          # every request was counted once
    assert any(s["after_idle"] for s in steps)                           # the waits between bursts are marked
    model, fits = fit(steps, delays)
    predicted = np.array([model.decode(s["rows"], 2, s["context"] - s["rows"])[0] for s in decode])
    measured = np.array([s["duration"] for s in decode])
    # how close the fit comes is the machine's to say (bench/sim_fidelity.py measures it); here only
    # that every decode step got a positive, finite prediction on the scale of what was measured
    assert np.all(np.isfinite(predicted)) and np.all(predicted > 0) and len(predicted) == len(measured)
    assert "decode.compute" in fits
    assert model.prefill_table[2].keys() == {5, 9, 17} and model.arrival_delay > 0   # words + BOS; 9: the trickle

    out = project_root / "trials/refit.yaml"
    assert main(["calibrate", "--study", "pa_batching", "--root", str(project_root),
                 "--from", str(runs), "--out", str(out)]) == 0
    again = load_profile(out)                  # the YAML keeps 4 significant digits
    assert again.decode_by_bucket == pytest.approx(model.decode_by_bucket, rel=1e-3)
    assert again.prefill_table[2] == pytest.approx(model.prefill_table[2], rel=1e-3)
    assert again.arrival_cost == pytest.approx(model.arrival_cost, rel=1e-3, abs=1e-9)
