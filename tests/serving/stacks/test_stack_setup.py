"""A host that cannot start the stack stops `tune` before its first trial (issue 27): the stack's
own code runs on a rendered config in its interpreter (llm-serving's launch scripts' imports and
its config check, vLLM's argument parser), one line, exit 2, nothing written. The stand-in checkout
here; the real llm-serving and the real vLLM when their environments are present."""
import os
import time
from pathlib import Path

import pytest

from serving.stacks import get_stack
from tests.serving.stacks.real_llm_serving import STUDY as REAL_STUDY, require_real
from tests.serving.stacks.standin import build_standin, write_base_config
from serving.config.render import render
from tests.serving.stacks.vllm_model import make_tiny_llama, vllm_python
from tests.conftest import ROOT
from tuner.cli import main


def run_tune(root: Path, capsys, *overrides: str, study: str = "pa_batching") -> tuple[int, str, float]:
    t0 = time.monotonic()
    rc = main(["--study", study, "--root", str(root), "--storage", f"sqlite:///{root}/trials/setup.db",
               "--no-progress", *overrides, "n_trials=2"])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    with capsys.disabled():   # a closing-note figure: the time from a broken setup to the exit-2 line
        print(f"\n{study}: broken setup to the exit-{rc} line: {took:.1f} s (load {os.getloadavg()[0]:.2f})")
    return rc, err, took


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_checkout_that_fails_at_import_stops_before_the_first_trial(project_root, tmp_path, capsys):
    si = build_standin(tmp_path / "standin")
    agent = si.root / "examples" / "start_agent.py"
    agent.write_text("import mindspore  # the interpreter lacks it\n" + agent.read_text())
    rc, err, took = run_tune(project_root, capsys, "backend=llm_serving", f"llm_serving.root={si.root}",
                             "llm_serving.accelerator=none", f"base_config={write_base_config(project_root)}",
                             "objectives=[{name: total_time, direction: minimize}]")   # no busy figure on a CPU
    assert rc == 2
    line = one_line(err)
    assert line.startswith("tune: error: llm_serving: llm_serving.python must start the checkout"), line
    assert "start_agent.py: ModuleNotFoundError: No module named 'mindspore'" in line
    assert not (project_root / "trials" / "setup.db").exists()   # no storage, no trial: nothing learnt


def test_the_standin_checkout_passes_the_dry_start(project_root, tmp_path):
    si = build_standin(tmp_path / "standin")
    work = tmp_path / "work"
    work.mkdir()
    base = project_root / write_base_config(project_root)
    assert get_stack("llm_serving").dry_start(base, {"root": str(si.root), "accelerator": "none"}, work) == []


@pytest.fixture
def real_root(project_root):
    require_real()
    return project_root


def test_real_llm_serving_in_an_interpreter_without_mindspore(real_root, capsys):
    import sys
    rc, err, took = run_tune(real_root, capsys, f"llm_serving.python={sys.executable}", study=REAL_STUDY)
    assert rc == 2
    line = one_line(err)
    assert "start_agent.py: ModuleNotFoundError: No module named 'mindspore" in line, line


def test_real_llm_serving_checks_the_rendered_config_with_its_own_parser(real_root, tmp_path):
    from tuner.space.compose import load_space
    space = load_space(REAL_STUDY, real_root)
    stack, opts = get_stack("llm_serving"), space.backend_options()
    good = real_root / space.base_config
    work = tmp_path / "good"
    work.mkdir()
    assert stack.dry_start(good, opts, work) == []
    # two agent ports for one model: llm-serving's check_valid_config refuses it (the agent would exit 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("agent_ports: [", "agent_ports: [16003, ", 1))
    assert bad.read_text() != good.read_text()
    work = tmp_path / "bad"
    work.mkdir()
    [why] = stack.dry_start(bad, opts, work)
    assert "check_valid_config" in why and "ERROR: got different size of agent_ports and models" in why, why


def test_real_vllm_refuses_an_option_it_does_not_know_before_the_first_trial(project_root, capsys, tmp_path):
    python = vllm_python()
    # the model made here: a clean clone has none under trials/_models (that is refused on its own, earlier)
    model = make_tiny_llama(python, tmp_path / "tiny_llama")
    base = project_root / "configs" / "vllm" / "tiny_llama.yaml"
    render(base, {"model": str(model)}, base)
    base.write_text(base.read_text() + "bogus_knob: 3\n")
    rc, err, took = run_tune(project_root, capsys, f"vllm.python={python}", study="vllm_batching")
    assert rc == 2
    line = one_line(err)
    assert "vllm: error: unrecognized arguments: --bogus-knob" in line, line
    assert not (project_root / "trials" / "setup.db").exists()
    work = project_root / "dry"
    work.mkdir()
    good = tmp_path / "good.yaml"
    render(ROOT / "configs" / "vllm" / "tiny_llama.yaml", {"model": str(model)}, good)
    assert get_stack("vllm").dry_start(good, {"python": python, "device": "cpu"}, work) == []
