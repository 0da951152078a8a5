import numpy as np

from serving.engine.engine import EngineSettings, LLMEngine
from serving.engine.model import ModelDims, NumpyLlama
from serving.engine.sequence import SamplingParams

DIMS = ModelDims(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48)


def test_paged_decode_equals_full_recompute():
    m = NumpyLlama(DIMS, num_blocks=16, block_size=4)
    p1, p2 = [1, 5, 9, 3, 4, 22, 7], [1, 8, 2]
    logits = m.prefill([p1, p2], [[3, 5], [7]], rows=4)       # padded to 4 rows, scattered blocks
    t1, t2 = int(logits[0].argmax()), int(logits[1].argmax())
    step = m.decode([t1, t2], [7, 3], [[3, 5], [7]], rows=4)
    ref = NumpyLlama(DIMS, 16, 4)
    r1 = ref.prefill([p1 + [t1]], [[1, 2]])[0]
    r2 = ref.prefill([p2 + [t2]], [[3]])[0]
    np.testing.assert_allclose(step[0], r1, atol=1e-4)
    np.testing.assert_allclose(step[1], r2, atol=1e-4)


def test_padding_rows_do_not_change_live_rows():
    a = NumpyLlama(DIMS, 16, 4)
    b = NumpyLlama(DIMS, 16, 4)
    np.testing.assert_allclose(a.prefill([[1, 4, 6]], [[2]], rows=1), b.prefill([[1, 4, 6]], [[2]], rows=8), atol=1e-5)


def test_same_seed_same_tokens_and_sampling_is_seeded():
    def generate(do_sample, seed=0):
        e = LLMEngine(EngineSettings(num_blocks=32, block_size=4, decode_batch_size=(2,), dims=DIMS))
        seqs = [e.add_request([1, 3, 4, 5], SamplingParams(max_new_tokens=6, do_sample=do_sample, seed=seed,
                                                            top_k=5, top_p=0.9, ignore_eos=True)) for _ in range(2)]
        while e.has_work():
            e.step()
        return [s.output_ids for s in seqs]

    assert generate(False) == generate(False)
    assert generate(True, seed=3) == generate(True, seed=3)
    assert all(len(o) == 6 for o in generate(True))


def test_engine_records_steps_and_busy_time():
    e = LLMEngine(EngineSettings(num_blocks=32, block_size=4, prefill_batch_size=(2,), decode_batch_size=(1, 2), dims=DIMS))
    for _ in range(3):
        e.add_request([1, 3, 4], SamplingParams(max_new_tokens=3, ignore_eos=True))
    while e.has_work():
        e.step()
    kinds = [r["kind"] for r in e.step_records()]
    assert "prefill" in kinds and "decode" in kinds
    assert e.tokens_generated == 9 and e.busy_s > 0
    assert e.step_records(since=e.step_count - 1)[0] == e.step_records()[-1]


def test_scheduler_stub_skips_the_model():
    e = LLMEngine(EngineSettings(num_blocks=32, block_size=4, stub="scheduler", dims=DIMS))
    seq = e.add_request([1, 3, 4], SamplingParams(max_new_tokens=4, ignore_eos=True))
    while e.has_work():
        e.step()
    assert e.model is None and len(seq.output_ids) == 4
