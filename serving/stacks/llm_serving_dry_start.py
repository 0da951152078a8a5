"""llm-serving's own code on a trial's config, without starting anything (LLMServingStack.dry_start).

The launch scripts' top-level imports run as the scripts run them (their folder first on the path,
the stack's interpreter and environment), then llm-serving's config parser and check
(``ServingConfig``, ``check_valid_config``) read the trial YAML, where the checkout has them.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["run_dry_start"]

DRY_START = r"""
import ast, sys, traceback
config, scripts = sys.argv[1], sys.argv[2:]

def fail(step):
    err = traceback.format_exc().strip().splitlines()[-1]
    print("dry-start failed: " + step + ": " + err, file=sys.stderr, flush=True)
    sys.exit(3)

for script in scripts:
    sys.path.insert(0, script.rsplit("/", 1)[0])
    try:
        tree = ast.parse(open(script).read(), script)
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(imports, []), script, "exec"), {"__name__": "__dry_start__"})
    except BaseException:
        fail("the imports of " + script)
try:
    from mindspore_serving.config.config import ServingConfig, check_valid_config
except ModuleNotFoundError as err:
    if (err.name or "").split(".")[0] != "mindspore_serving":
        fail("importing mindspore_serving.config.config")
    sys.exit(0)   # a checkout without llm-serving's config module: its scripts read the YAML themselves
import contextlib, io
said = io.StringIO()   # check_valid_config prints why it refuses
try:
    with contextlib.redirect_stdout(said):
        ok = check_valid_config(ServingConfig(config))
except BaseException:
    fail("ServingConfig(" + config + ")")
if not ok:
    why = " ".join(said.getvalue().split()) or "no reason printed"
    print("dry-start failed: check_valid_config(ServingConfig(" + config + ")): " + why, file=sys.stderr)
    sys.exit(3)
"""




def run_dry_start(python: str, env: dict[str, str], trial_yaml: Path, scripts: list[Path], cwd: Path,
                  timeout: float = 600) -> str | None:
    """None when the checkout's code took the config; else what failed (the step and its exception)."""
    try:
        done = subprocess.run([python, "-c", DRY_START, str(trial_yaml), *map(str, scripts)], capture_output=True,
                              text=True, timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        return f"its imports within {timeout:g} s (still importing)"
    if done.returncode == 0:
        return None
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith("dry-start failed: ")]
    return (said[-1].removeprefix("dry-start failed: ") if said else (lines or ["(no output)"])[-1])[:400]
