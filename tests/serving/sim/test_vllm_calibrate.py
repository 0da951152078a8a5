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


def test_a_replay_the_host_stalled_is_measured_again_and_left_out_after_three_tries():
    """The calibration's timings are vLLM's only when the client woke on time: a stalled replay goes again."""
    from serving.stacks import vllm_sim_calibrate as cal
    from serving.stacks.base import ReplayResult
    from serving.workload import RequestRecord

    class Running:
        def __init__(self, lags):
            self.lags, self.calls = iter(lags), 0

        def replay(self, plan, options):
            self.calls += 1
            recs = [RequestRecord(r.index, r.prompt_len, r.output_len, 0.0, sent=0.0, first_token=0.01 + 0.001 * i,
                                  done=0.05 + 0.001 * i, n_tokens=r.output_len, token_times=[0.01] * r.output_len)
                    for i, (_, r) in enumerate(plan)]
            return ReplayResult(recs, {}, next(self.lags, [0.001]))

    assert cal.steady([0.001] * 200) and not cal.steady([0.001] * 99 + [0.5]) and cal.steady([])
    shapes = len(cal.LONE) * len(cal.LONE_OUTPUT) + len(cal.BURSTS) * len(cal.BURST_OUTPUT)
    logged = []
    stalled = Running([[0.001, 0.8], [0.001, 0.8]])                  # the first shape: twice, then steady
    cal.measure(stalled, None, logged.append, passes=1)
    assert stalled.calls == shapes + 2 and "2 replays measured again, 0 left out" in logged[-1]
    lost = Running([[0.9]] * 3)                                        # three stalls: that shape is left out
    cal.measure(lost, None, logged.append, passes=1)
    assert lost.calls == shapes + 2 and "2 replays measured again, 1 left out" in logged[-1]
