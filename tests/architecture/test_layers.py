"""Layers run one way: serving/ never imports tuner/, and no module imports form a cycle,
including imports hidden in function bodies (every import statement counts, wherever it is)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tuner", "serving")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules named by any import statement in the file (resolved to a known module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n:
                found.add(n)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {}
    for name, path in mods.items():
        deps = imports_of(path, known) - {name}
        # a package's __init__ re-exporting its own modules is not a dependency of those modules on it
        g[name] = {d for d in deps if not name.startswith(d + ".")}
    return g


def test_serving_never_imports_tuner():
    bad = {m: sorted(d for d in deps if d.split(".")[0] == "tuner")
           for m, deps in graph().items() if m.split(".")[0] == "serving"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [])
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("pkg", ["tuner", "serving"])
def test_graph_is_not_empty(pkg):
    """Guards the two tests above against passing on a graph that found nothing."""
    g = graph()
    assert sum(len(d) for m, d in g.items() if m.startswith(pkg)) > 20


#: sub-packages from the top down; a module may import only from its own sub-package or a later
#: layer (never a sibling of its own layer); tuner/ may import any of serving/. docs/architecture.md
#: states this order.
LAYERS = [
    ["tuner.cli"],
    ["tuner.cli_args", "tuner.cli_reference"],
    ["tuner.results", "tuner.tools"],
    ["tuner.study"],
    ["tuner.screening"],
    ["tuner.search"],
    ["tuner.runtime"],
    ["tuner.space"],
    ["tuner.workload"],
    ["tuner"],     # the package itself
    ["serving.stacks"],
    ["serving.sim", "serving.replay", "serving.probes"],
    ["serving.engine"],
    ["serving"],   # serving/*.py: the types and token counters both sides share
    ["serving.config", "serving.procs"],
]


def subpackage(module: str) -> str:
    """The LAYERS entry a module belongs to: the longest one that is it or a package above it."""
    names = {p for layer in LAYERS for p in layer}
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in names:
            return ".".join(parts[:n])
    return module


def test_subpackages_import_only_downwards_in_the_stated_order():
    rank = {p: i for i, layer in enumerate(LAYERS) for p in layer}
    wrong = []
    for mod, deps in graph().items():
        a = subpackage(mod)
        assert a in rank, f"{mod} is in no layer of LAYERS"
        for d in deps:
            b = subpackage(d)
            crossing = a.split(".")[0] == "tuner" and b.split(".")[0] == "serving"   # tuner/ uses serving/
            if a != b and not crossing and rank[b] <= rank[a]:
                wrong.append(f"{mod} -> {d}")
    assert wrong == [], "\n".join(wrong)


def test_the_documented_layers_are_the_tested_ones():
    """docs/architecture.md's list of layers is this file's LAYERS, row for row."""
    import re
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"## Layers.*?```\n(.*?)```", text, re.S).group(1)
    rows = [[n.strip() for n in line.split("(")[0].split(",")] for line in block.splitlines()
            if line.strip() and not line.startswith(" ")]
    assert rows == LAYERS


def test_no_backend_is_named_in_tuner():
    """The tuner asks a stack what it can do (surrogate, stages, steps, capabilities); it never asks
    which stack it holds. A backend's name as a string in tuner/ would be such a question. Trace
    format names (tuner/workload/formats: vLLM's custom dataset is format "vllm") are not backends."""
    import re
    from serving.stacks import stack_names
    names = "|".join(re.escape(n) for n in stack_names())
    quoted = re.compile(rf"""["']({names})["']""")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for p in (ROOT / "tuner").rglob("*.py") if "formats" not in p.parts
             for i, line in enumerate(p.read_text().splitlines(), 1) if quoted.search(line)]
    assert found == []
    imported = {d for m, deps in graph().items() if m.startswith("tuner") for d in deps
                if d.startswith("serving.stacks.") and d.split(".")[2] in stack_names()}
    assert imported == set(), imported


def test_only_the_trial_record_knows_user_attr_keys():
    """Trials' and studies' user attrs are written and read through tuner/trial_record.py alone (a
    renamed key then fails where it is written, not silently in a reader elsewhere)."""
    import re
    attr = re.compile(r"\.user_attrs\b(?!=)|set_user_attr\(|set_trial_user_attr\(")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for pkg in ("tuner", "serving") for p in (ROOT / pkg).rglob("*.py") if p.name != "trial_record.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if attr.search(line)]
    assert found == []
