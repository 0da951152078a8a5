"""A study's search space file (search_spaces/<study>.yaml), typed and strict.

``params`` is nested like the serving YAML; a leaf is a mapping with ``type``:
  int:          {type: int, low, high, step?: 1, log?: false}
  float:        {type: float, low, high, step?: null, log?: false}
  categorical:  {type: categorical, choices: [...]}
so ``params.pa_config.num_blocks`` tunes ``pa_config.num_blocks`` in the base config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.config.errors import ConfigError, from_validation_error
from tuner.rigour_spec import EarlyStopSpec, FinalistSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _shape(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical param needs a non-empty 'choices' list")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"low <= high must hold for an {self.type} param, got low={self.low}, high={self.high}")
        if self.log and self.step not in (None, 1):
            raise ValueError("log and step cannot be combined")
        return self

    def suggest(self, trial: optuna.Trial, name: str):
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list:
        """Every value (for exhaustive grids); float ranges need a step."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            if self.log:
                vals, v = [], int(self.low)
                while v <= self.high:
                    vals.append(v)
                    v *= 2
                return vals
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError("a float param needs a step to be gridded")
        n = int(round((self.high - self.low) / self.step))
        return [self.low + i * self.step for i in range(n + 1)]


class Objective(_Strict):
    name: str
    direction: Literal["minimize", "maximize"]


class Constraint(_Strict):
    """``metric <= max`` and/or ``metric >= min``; broken = infeasible trial."""
    metric: str
    max: float | None = None
    min: float | None = None


class LoadSpec(_Strict):
    qps: float = Field(gt=0, description="performance_serving -X: requests per second")
    duration: float = Field(gt=0, description="performance_serving -T: seconds; N = int(X*T) requests")
    seed: int = 0
    stream: bool = True
    parameters: dict[str, Any] = Field(default_factory=lambda: {"do_sample": False, "return_full_text": True})
    request_timeout: float = Field(600.0, gt=0)


class Timeouts(_Strict):
    ready: float = Field(120.0, gt=0)
    replay: float = Field(900.0, gt=0)


class StudySpace(_Strict):
    study: str
    description: str = ""
    backend: Literal["embedded", "llm_serving", "sim"] = "embedded"
    base_config: str
    trace: str
    load: LoadSpec
    objectives: list[Objective]
    params: dict[str, Any]
    constraints: list[Constraint] = []
    repeats: int = Field(1, ge=1, description="measurements per configuration; the median is the objective")
    finalists: FinalistSpec = Field(default_factory=FinalistSpec)
    early_stop: EarlyStopSpec = Field(default_factory=EarlyStopSpec)
    prescreen: dict[str, Any] | None = Field(None, description="simulate first; see tuner/screening.py")
    n_trials: int = Field(20, ge=1)
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int | None = None
    max_failed_fraction: float = Field(0.0, ge=0, le=1)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    embedded: dict[str, Any] = Field(default_factory=dict)
    llm_serving: dict[str, Any] = Field(default_factory=dict)
    sim: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        if not self.objectives:
            raise ValueError("at least one objective is needed")
        flat = flatten_params(self.params)
        if not flat:
            raise ValueError("params names no parameter to tune")
        return self

    def param_specs(self) -> dict[str, ParamSpec]:
        return flatten_params(self.params)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {key: spec.suggest(trial, key) for key, spec in self.param_specs().items()}

    def backend_options(self) -> dict[str, Any]:
        return dict(getattr(self, self.backend))


def flatten_params(tree: dict[str, Any], prefix: str = "") -> dict[str, ParamSpec]:
    out: dict[str, ParamSpec] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if not isinstance(v, dict):
            raise ValueError(f"params.{key} must be a mapping (a section or a param with 'type'), got {v!r}")
        if "type" in v:
            try:
                out[key] = ParamSpec.model_validate(v)
            except ValidationError as err:
                raise ValueError(f"params.{key}: {err.errors()[0]['msg']}") from None
        else:
            out |= flatten_params(v, key + ".")
    return out


def parse_space(data: Any, path: str | Path | None = None) -> StudySpace:
    if not isinstance(data, dict):
        raise ConfigError("a search space must be a mapping", path)
    try:
        return StudySpace.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err, path) from None
