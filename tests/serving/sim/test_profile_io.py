"""Profile files written through ruamel.yaml: the bundled embedded profile is exactly what the
writer makes of its own numbers, and what is written loads back to the same model."""
import pytest
from ruamel.yaml import YAML

from serving.sim.fit import Fit, fit
from serving.sim.profile_io import PROFILES, load_profile, write_profile
from tests.serving.sim.factories import synthetic_steps

# the fit statistics in serving/sim/profiles/embedded.yaml's comments
EMBEDDED_FITS = {"prefill.compute": Fit({}, 5211, 0.997, 7.088e-3), "prefill.host": Fit({}, 5180, 0.018, 0.025e-3),
                 "decode.compute": Fit({}, 56008, 0.988, 0.329e-3), "decode.host": Fit({}, 56144, 0.668, 0.011e-3)}


def test_the_bundled_embedded_profile_is_what_the_writer_writes(tmp_path):
    shipped = (PROFILES / "embedded.yaml").read_text()
    header = "\n".join(line.removeprefix("# ") for line in shipped.splitlines()[:10])
    out = tmp_path / "embedded.yaml"
    write_profile(load_profile("embedded"), out, header, EMBEDDED_FITS, n_delays=126)
    assert out.read_text() == shipped
    assert load_profile(out) == load_profile("embedded")


def test_a_fitted_profile_loads_back_to_4_significant_digits(tmp_path):
    model, fits = fit(synthetic_steps(noise=0.05), delays=[0.002, 0.004, 0.003])
    out = tmp_path / "deep" / "p.yaml"
    write_profile(model, out, "a test profile", fits, n_delays=3)
    back = load_profile(out)
    assert back.decode_by_bucket == pytest.approx(model.decode_by_bucket, rel=5e-4)
    assert back.prefill(2, 16, 65)[0] == pytest.approx(model.prefill(2, 16, 65)[0], rel=5e-4)
    assert back.arrival_delay == model.arrival_delay == pytest.approx(0.0015)
    text = out.read_text()
    assert text.startswith("# a test profile\nname: embedded\n")
    assert "  # compute fit: " in text and "R^2" in text and "of 3 lone requests" in text
    assert "  compute: {base: 0, per_row: 0, per_padded_token: 0, per_padded_token_sq: 0}\n" in text
    doc = YAML().load(text)                # plain YAML data: the comments are comments, nothing else
    assert set(doc) == {"name", "single_prefill", "prefill", "decode", "request"}


def test_a_hand_made_profile_without_fits_round_trips(tmp_path):
    model = load_profile("ascend910b_llama2_7b")
    out = tmp_path / "a.yaml"
    write_profile(model, out, "copied")
    assert load_profile(out) == model
    assert "fit:" not in out.read_text() and "one prompt per prefill step" in out.read_text()
