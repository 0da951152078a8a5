"""Latency profile files: find and load one (checked by serving.sim.profile_schema), and write
a fitted model back as YAML through ruamel.yaml, with comments saying where each number comes
from. Numbers are written to 4 significant digits."""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from serving.config.errors import ConfigError
from serving.config.schema import ServingYaml
from serving.sim.fit import Fit
from serving.sim.latency import LatencyModel

__all__ = ["PROFILES", "default_profile", "load_profile", "profile_document", "profile_path", "write_profile"]

PROFILES = Path(__file__).parent / "profiles"

TABLE_NOTE = "mean step time by bucket, then by longest prompt (tokens)"
BY_BUCKET_NOTE = "base cost of a decode step padded to each bucket"
REQUEST_NOTE = ("request delays: half each of the median (client TTFT - prefill step) of {n} lone requests;\n"
                "arrival_cost: step time added per request the server takes in while a step runs (HTTP\n"
                "parsing and tokenising share the GIL with the engine thread), fitted on decode steps")


def default_profile(cfg: ServingYaml) -> str:
    """The bundled profile a config is simulated with when none is named: the embedded engine's for
    its config, else the 910B LLaMA-2-7B one (llm-serving's)."""
    return "embedded" if cfg.engine_config is not None else "ascend910b_llama2_7b"


def profile_path(name_or_path: str | Path) -> Path:
    """A bundled profile name (``embedded``) or a path to a profile YAML."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.parent != Path("."):
        return p
    return PROFILES / f"{name_or_path}.yaml"


def load_profile(name_or_path: str | Path) -> LatencyModel:
    path = profile_path(name_or_path)
    if not path.exists():
        known = sorted(q.stem for q in PROFILES.glob("*.yaml"))
        raise ConfigError(f"latency profile not found; bundled profiles: {', '.join(known) or 'none'}", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", path) from None
    return LatencyModel.from_dict(data, path)


def _number(v: float) -> float | int:
    """4 significant digits; a whole number as an int (``0``, not ``0.0``)."""
    r = float(f"{v:.4g}")
    return int(r) if r.is_integer() else r


def _flow(values: Mapping) -> CommentedMap:
    m = CommentedMap((k, _number(v)) for k, v in values.items())
    m.fa.set_flow_style()
    return m


def _fit_note(part: str, f: Fit) -> str:
    return f"{part} fit: {f.n} steps, R^2 {f.r2:.3f}, rmse {f.rmse * 1e3:.3f} ms"


def profile_document(model: LatencyModel, header: str, fits: Mapping[str, Fit] | None = None,
                     n_delays: int | None = None) -> CommentedMap:
    """The profile as a ruamel document: ``header`` (lines, without ``#``) on top, each fitted part
    followed by its fit statistics when ``fits`` has them ("prefill.compute", ...), and how the
    request delays were found when ``n_delays`` (lone requests) is given."""
    fits = fits or {}
    doc = CommentedMap(name=model.name, single_prefill=model.single_prefill)
    doc.yaml_set_start_comment(header)
    doc.yaml_add_eol_comment("one prompt per prefill step, whatever prefill_batch_size says" if model.single_prefill
                             else f"the {model.name} engine batches prompts up to prefill_batch_size",
                             "single_prefill", column=30)
    host_note = None            # a section's host fit: a comment in that section, above the next key
    for kind in ("prefill", "decode"):
        sec = CommentedMap(compute=_flow(getattr(model, f"{kind}_compute")))
        if kind == "prefill" and model.prefill_table:
            sec["table"] = CommentedMap((b, _flow(r)) for b, r in model.prefill_table.items())
            sec.yaml_add_eol_comment(TABLE_NOTE, "table", column=11)
        if kind == "decode" and model.decode_by_bucket:
            sec["by_bucket"] = _flow(model.decode_by_bucket)
            sec.yaml_add_eol_comment(BY_BUCKET_NOTE, "by_bucket")
        # per_row (host work on a padded batch) is fitted from replays only (calibrate_replays): left out at 0
        sec["host"] = _flow({k: v for k, v in getattr(model, f"{kind}_host").items() if v or k != "per_row"})
        if f"{kind}.compute" in fits:
            sec.yaml_set_comment_before_after_key("host", _fit_note("compute", fits[f"{kind}.compute"]), indent=2)
        doc[kind] = sec
        if host_note:
            doc.yaml_set_comment_before_after_key(kind, host_note, indent=2)
        host_note = _fit_note("host", fits[f"{kind}.host"]) if f"{kind}.host" in fits else None
    doc["request"] = _flow({"arrival_delay": model.arrival_delay, "delivery_delay": model.delivery_delay,
                            "arrival_cost": model.arrival_cost})
    if host_note:
        doc.yaml_set_comment_before_after_key("request", host_note, indent=2)
    if n_delays is not None:
        doc.yaml_set_comment_before_after_key("request", REQUEST_NOTE.format(n=n_delays), indent=0)
    return doc


def write_profile(model: LatencyModel, out: Path, header: str, fits: Mapping[str, Fit] | None = None,
                  n_delays: int | None = None) -> None:
    """Write ``model`` to ``out`` (see :func:`profile_document`)."""
    y = YAML()
    y.width = 4096                     # a table row stays on one line
    text = io.StringIO()               # rendered whole first: a failure leaves no half-written file
    y.dump(profile_document(model, header, fits, n_delays), text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.getvalue())
