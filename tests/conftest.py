import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "llama" / "tiny_llama_pa.yaml"
SMALL_MODEL = {"engine_config.hidden_size": 48, "engine_config.num_layers": 1, "engine_config.intermediate_size": 128}
#: the fuzz suite's distinct inputs per kind (tests/fuzz/conftest.py), gathered here so the count is
#: printed whether the suite ran in one process or in pytest-xdist workers
FUZZ_SEEN = pytest.StashKey[dict]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # xdist controller: a worker ended; keep its fuzz inputs
    seen = node.config.stash.setdefault(FUZZ_SEEN, {})
    for kind, values in getattr(node, "workeroutput", {}).get("fuzz_seen", {}).items():
        seen.setdefault(kind, set()).update(values)


#: the suite's longest tests (--durations, 2 cores), started first: pytest-xdist hands tests out in
#: collection order, and one of these started last keeps the whole suite waiting on one worker
LONGEST = ("tests/bench/test_tabular.py::test_a_shuffled_objective",
           "tests/tuner/study/test_rigour_faults.py::test_each_fault",
           "tests/test_docs.py::test_the_readme_first_study",
           "tests/tuner/study/test_resume.py::test_sigkilled_tune",
           "tests/tuner/runtime/test_closed_output.py::",
           "tests/tuner/workload/test_streaming.py::test_a_large_trace",
           "tests/tuner/screening/test_warm_start.py::test_the_sims_best",
           "tests/bench/test_bench_smoke.py::test_hours_to_tuned")


#: the real stacks' groups (one worker each, one launch after another: in CI, where they run, the
#: vLLM group alone is ~10 min on a quiet 2-core host), started before everything else
REAL_GROUPS = ("vllm_real", "llm_serving_real")


def _rank(item, sharing: dict[str, int]) -> tuple[int, int, int, int]:
    group = item.get_closest_marker("xdist_group")
    name = (group.args[0] if group.args else group.kwargs.get("name")) if group else None
    if name in REAL_GROUPS:
        # the tests sharing one vLLM (tests/serving/conftest.py) last, their modules kept whole (a module
        # fixture is not made twice): that vLLM is then up beside no other real-vLLM launch of the worker
        return 0, REAL_GROUPS.index(name), sharing.get(_module(item), -1), int("shared_vllm" in item.fixturenames)
    return 1, next((i for i, p in enumerate(LONGEST) if item.nodeid.startswith(p)), len(LONGEST)), 0, 0


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items):
    sharing: dict[str, int] = {}      # module -> its place among the modules with a test sharing that vLLM
    for i in items:
        if "shared_vllm" in i.fixturenames:
            sharing.setdefault(_module(i), len(sharing))
    items.sort(key=lambda item: _rank(item, sharing))


def pytest_terminal_summary(terminalreporter):
    seen = terminalreporter.config.stash.get(FUZZ_SEEN, {})
    if seen:
        total = sum(len(v) for v in seen.values())
        kinds = ", ".join(f"{k} {len(v)}" for k, v in sorted(seen.items()))
        terminalreporter.write_line(f"fuzz: {total} distinct bad inputs exercised ({kinds})")


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    """A throwaway project root: search_spaces/, configs/, traces/ copied, trials/ empty."""
    for name in ("search_spaces", "configs", "traces"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "trials").mkdir()
    # GP BO costs seconds per trial and only matters to tests of sampling (they say sampler=gp,
    # or read the shipped spaces under ROOT): elsewhere the copy samples at random
    for space in (tmp_path / "search_spaces").glob("*.yaml"):
        text = space.read_text()
        text = text.replace("\nsampler: gp", "\nsampler: random")
        # every trial judges its client (tuner.runtime.client_check); on a test host running 3 workers
        # on 2 cores the OS delays every client now and then, and a 2-core VM like CI's stops whole for
        # up to seconds while vLLM runs in another worker (bench/host.py: 5.7 s seen): tests of that
        # judgement set their bounds
        relaxed = "max_send_lag: 10.0, max_read_lag: 10.0"
        if "\ncapacity:" in text:
            text = text.replace("max_send_lag: 0.025, max_read_lag: 0.025", relaxed)
        else:
            text += f"\ncapacity: {{{relaxed}}}\n"
        space.write_text(text)
    # a smaller model in the copy keeps end-to-end tests quick; the code path is the same
    from serving.config.render import render
    tiny = tmp_path / "configs/llama/tiny_llama_pa.yaml"
    render(tiny, SMALL_MODEL, tiny)
    return tmp_path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """The tiny base config shrunk further so tests start and decode fast."""
    from serving.config.render import render
    out = tmp_path / "tiny.yaml"
    render(TINY, {"model_config.decode_batch_size": 4, "pa_config.num_blocks": 64, **SMALL_MODEL}, out)
    return out
