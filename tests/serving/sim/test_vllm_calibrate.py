"""`tune calibrate --from DIR` on a vLLM study refits the kept records; nothing is launched."""
import json
from dataclasses import asdict

from serving.stacks.vllm_sim_calibrate import RECORDS_FILE
from serving.sim.vllm_profile import load_vllm_profile
from tests.serving.sim.test_vllm_fit import TRUE, synthetic
from tuner.cli import main


def test_refit_from_kept_records_writes_the_profile_beside_the_study(project_root, tmp_path, capsys):
    kept = tmp_path / "calibration"
    kept.mkdir()
    (kept / RECORDS_FILE).write_text(json.dumps({"observations": [asdict(o) for o in synthetic()],
                                                 "kv_tokens": 524288}))
    assert main(["calibrate", "--study", "vllm_batching", "--root", str(project_root), "--from", str(kept)]) == 0
    profile = load_vllm_profile(project_root / "trials" / "vllm_batching" / "vllm_surrogate.yaml")
    assert abs(profile.steptime.per_decode_seq / TRUE.per_decode_seq - 1) < 1e-3 and profile.kv_tokens == 524288
    assert "wrote" in capsys.readouterr().out


def test_refit_from_a_folder_without_records_is_one_error_line(project_root, tmp_path, capsys):
    assert main(["calibrate", "--study", "vllm_batching", "--root", str(project_root), "--from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune: error:") and RECORDS_FILE in err[0]
    assert not (project_root / "trials" / "vllm_batching").exists()
