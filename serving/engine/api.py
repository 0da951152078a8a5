"""llm-serving's request and response shapes (server_app_post.py / client_utils.py)."""
from __future__ import annotations

import json
import math
from typing import Any

from serving.engine.sequence import SamplingParams

# llm-serving turns nulls into these.
_DEFAULTS = {"top_k": 3, "top_p": 1.0, "temperature": 1.0, "max_new_tokens": 300}
_INT_MAX = 2**31 - 1           # the int32 the baseline's sampling kernels take
_SEED_MAX = 2**64 - 1          # numpy's generators take any unsigned 64-bit seed
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


class BadRequest(ValueError):
    """A request the server answers with 400 and this message; it never reaches the engine."""


def _truthy(v: Any, key: str = "flag") -> bool:
    """llm-serving's clients send flags as JSON booleans or as strings ("False")."""
    if isinstance(v, bool) or v is None:
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    raise BadRequest(f'"{key}" must be true/false (or "True"/"False", 0/1), got {_show(v)}')


def _show(v: Any) -> str:
    """A short rendering of a sent value for an error message."""
    try:
        text = repr(v) if isinstance(v, float) else json.dumps(v, default=str)
    except ValueError:  # an integer with more digits than Python will print
        text = f"a {type(v).__name__} too large to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _number(params: dict, key: str) -> float:
    """A finite number, sent as a JSON number or a numeric string; null means the default."""
    v = params.get(key)
    if v is None:
        return float(_DEFAULTS[key])
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BadRequest(f'"{key}" must be a number, got {_show(v)}')
    try:
        f = float(v.strip() if isinstance(v, str) else v)
    except (ValueError, OverflowError):
        raise BadRequest(f'"{key}" must be a finite number, got {_show(v)}') from None
    if not math.isfinite(f):
        raise BadRequest(f'"{key}" must be a finite number, got {_show(v)}')
    return f


def _integer(params: dict, key: str, low: int, high: int) -> int:
    """An integer in [low, high], sent as a JSON number or a numeric string; null means the default."""
    v = params.get(key)
    if v is None:
        return _DEFAULTS.get(key, 0)
    if isinstance(v, str):
        text = v.strip()
        try:
            v = int(text)
        except ValueError:
            try:
                v = float(text)
            except ValueError:
                raise BadRequest(f'"{key}" must be an integer, got {_show(params[key])}') from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise BadRequest(f'"{key}" must be an integer, got {_show(params[key])}')
    v = int(v)
    if not low <= v <= high:
        raise BadRequest(f'{low} <= "{key}" <= {high} must hold, got {_show(params[key])}')
    return v


def parse_request(body: Any, ignore_eos: bool) -> tuple[str, SamplingParams, dict]:
    """Returns (prompt text, sampling params, the parameters dict as sent); BadRequest for anything
    the engine could not run: wrong types, NaN or infinite numbers, values out of range."""
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    if not isinstance(body.get("inputs"), str):
        raise BadRequest(f'body must hold a string "inputs", got {_show(body.get("inputs"))}')
    params = body.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise BadRequest(f'"parameters" must be a JSON object, got {_show(params)}')
    top_k = _integer(params, "top_k", 0, _INT_MAX)
    top_p = float(_number(params, "top_p"))
    if not 0 < top_p <= 1:
        raise BadRequest(f'0 < "top_p" <= 1 must hold, got {_show(params.get("top_p"))}')
    temperature = float(_number(params, "temperature"))
    if temperature < 0:
        raise BadRequest(f'"temperature" >= 0 must hold, got {_show(params.get("temperature"))}')
    max_new = _integer(params, "max_new_tokens", 1, _INT_MAX)
    seed = _integer(params, "seed", 0, _SEED_MAX)
    do_sample = _truthy(params.get("do_sample", True), "do_sample")
    _truthy(params.get("return_full_text", True), "return_full_text")  # read later; checked now
    if temperature == 0:  # llm-serving: no temperature means greedy
        temperature, do_sample = 1.0, False
    sp = SamplingParams(max_new_tokens=max_new, do_sample=do_sample, temperature=temperature,
                        top_k=max(top_k, 1), top_p=top_p, seed=seed, ignore_eos=ignore_eos)
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
