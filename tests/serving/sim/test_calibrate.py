"""The profile YAML that tune calibrate writes."""
import pytest

from serving.sim.fit import fit
from serving.sim.latency import load_profile
from tests.serving.sim.factories import synthetic_steps
from tuner.tools.calibrate import profile_text


def test_profile_text_loads_back(tmp_path):
    model, fits = fit(synthetic_steps())
    out = tmp_path / "embedded.yaml"
    out.write_text(profile_text(model, fits, "configs/llama/tiny_llama_pa.yaml", 3))
    back = load_profile(out)
    assert back.decode_by_bucket == pytest.approx(model.decode_by_bucket, rel=1e-3)
    assert back.prefill(2, 16, 65)[0] == pytest.approx(model.prefill(2, 16, 65)[0], rel=1e-3)
    assert "R^2" in out.read_text()
