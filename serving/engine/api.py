"""llm-serving's request and response shapes (server_app_post.py / client_utils.py)."""
from __future__ import annotations

import json
from typing import Any

from serving.engine.sequence import SamplingParams

# llm-serving turns nulls into these; invalid values are clamped, not rejected.
_DEFAULTS = {"top_k": 3, "top_p": 1.0, "temperature": 1.0, "max_new_tokens": 300}


class BadRequest(ValueError):
    pass


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


def parse_request(body: Any, ignore_eos: bool) -> tuple[str, SamplingParams, dict]:
    """Returns (prompt text, sampling params, the parameters dict as sent)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
        raise BadRequest('body must be a JSON object with a string "inputs"')
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest('"parameters" must be a JSON object')
    p = {k: (_DEFAULTS[k] if params.get(k) is None else params[k]) for k in _DEFAULTS}
    try:
        top_k = int(p["top_k"])
        top_p = min(max(float(p["top_p"]), 0.01), 1.0)
        temperature = float(p["temperature"])
        max_new = int(p["max_new_tokens"])
    except (TypeError, ValueError) as err:
        raise BadRequest(f"bad sampling parameter: {err}") from None
    if max_new < 1:
        raise BadRequest(f"max_new_tokens >= 1 must hold, got {max_new}")
    do_sample = _truthy(params.get("do_sample", True))
    if temperature <= 0:
        temperature, do_sample = 1.0, False
    sp = SamplingParams(max_new_tokens=max_new, do_sample=do_sample, temperature=temperature,
                        top_k=top_k if top_k >= 1 else 1, top_p=top_p, seed=int(params.get("seed") or 0),
                        ignore_eos=ignore_eos)
    return body["inputs"], sp, params


def token_obj(token: int | None, text: str) -> dict | None:
    if token is None:
        return None
    return {"id": token, "logprob": None, "special": token < 3, "text": text}


def stream_line(text: str, token: int | None, finish_reason: str | None, n: int) -> bytes:
    # The one-element list mirrors the baseline server's stray trailing comma.
    data = [{"generated_text": text, "tokens": token_obj(token, text), "finish_reason": finish_reason,
             "generated_tokens": n, "details": None}]
    return (json.dumps({"event": "message", "retry": 30000, "data": data}) + "\n").encode()


ERROR_TEXT = {
    "prompt_out_of_range": "Error202: prompt out of range or prompt is empty",
    "prompt_token_ids_empty": "Error203: prompt token empty",
    "predict_failed": "error304: generation task stop abnormally!",
}
