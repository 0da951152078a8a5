"""The step loop's own records, which `tune calibrate` fits the simulator to."""
from serving.engine.engine import EngineSettings, LLMEngine
from serving.engine.sequence import SamplingParams


def test_step_records_count_the_queue_and_the_requests_taken_in_since_the_last_step():
    engine = LLMEngine(EngineSettings(num_blocks=64, block_size=4, prefill_batch_size=(1,), decode_batch_size=(4,),
                                      stub="scheduler"))
    for _ in range(3):
        engine.add_request([1, 5, 6], SamplingParams(max_new_tokens=2, ignore_eos=True))
    engine.note_idle()                                  # the runner waited for these requests
    engine.step()                                       # prefills one prompt; two still queue
    engine.add_request([1, 7], SamplingParams(max_new_tokens=2, ignore_eos=True))
    engine.step()
    engine.step()
    first, second, third = engine.step_records()
    assert (first["kind"], first["waiting"], first["arrivals"], first["after_idle"]) == ("prefill", 2, 3, True)
    assert (second["waiting"], second["arrivals"], second["after_idle"]) == (2, 1, False)
    assert third["arrivals"] == 0
