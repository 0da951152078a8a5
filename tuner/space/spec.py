"""A study's search space file (search_spaces/<study>.yaml), typed and strict.

``params`` is nested like the serving YAML; a leaf is a mapping with ``type``:
  int:          {type: int, low, high, step?: 1, log?: false}
  float:        {type: float, low, high, step?: null, log?: false}
  categorical:  {type: categorical, choices: [...], ordered?: auto}
so ``params.pa_config.num_blocks`` tunes ``pa_config.num_blocks`` in the base config.

An ordered categorical (numeric choices listed in increasing order, or ``ordered: true``) is
sampled as its position in the list, an Optuna int param named ``<key>.index``: batch sizes
1, 2, 4 ... 64 are neighbours to the sampler, so it can learn "bigger is better" instead of
treating 32 and 64 as unrelated labels. The chosen value is what the config and the trial's
``config`` user attribute hold; ``StudySpace.config_of`` maps stored params back to values.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.config.errors import ConfigError, from_validation_error
from serving.stacks import get_stack, stack_names
from serving.stacks.registry import DEFAULT_BACKEND
from tuner import trial_record
from tuner.space.metric_names import is_known_metric, known_metrics_text
from tuner.space.capacity import CAPACITY, CapacitySpec, check_slo
from tuner.space.rigour import EarlyStopSpec, FinalistSpec, PrescreenSpec


INDEX_SUFFIX = ".index"
#: a study name is a file name under trials/ (database, run folders): no separators, no hidden names
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
#: the most requests a load may schedule: a plan of every send is held in memory (and replayed)
MAX_REQUESTS = 1_000_000


def check_study_name(name: str) -> str:
    if not STUDY_NAME.fullmatch(name):
        raise ValueError(f"study: a name of letters, digits, '_', '.' and '-' (not starting with '.' or '-', "
                         f"at most 100) must hold, got {name!r}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None
    ordered: bool | None = Field(None, description="categorical only: sample by list position; "
                                 "default: true for numbers listed in increasing order")

    @model_validator(mode="after")
    def _shape(self):
        if self.ordered is not None and self.type != "categorical":
            raise ValueError(f"'ordered' applies to categorical params only, this one is {self.type}")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical param needs a non-empty 'choices' list")
            odd = [c for c in self.choices if c is not None and not isinstance(c, (bool, int, float, str))]
            if odd:  # what Optuna can store as a categorical value
                raise ValueError(f"each choice must be a number, a string, a bool or null, got {odd[0]!r}")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"categorical choices must be distinct, got {self.choices}")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"low <= high must hold for an {self.type} param, got low={self.low}, high={self.high}")
        if self.log and self.step not in (None, 1):
            raise ValueError("log and step cannot be combined")
        return self

    @property
    def is_ordered(self) -> bool:
        if self.type != "categorical":
            return False
        if self.ordered is not None:
            return self.ordered
        nums = [c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        return len(nums) == len(self.choices) > 1 and all(a < b for a, b in zip(nums, nums[1:]))

    def stored_name(self, key: str) -> str:
        """The Optuna param this spec is stored under: ``<key>.index`` when ordered, else ``key``."""
        return key + INDEX_SUFFIX if self.is_ordered else key

    def value_of(self, stored: Any) -> Any:
        """The config value for a stored Optuna param value."""
        return self.choices[int(stored)] if self.is_ordered else stored

    def stored_of(self, value: Any) -> Any:
        """The Optuna param value for a config value (enqueueing a known configuration)."""
        if not self.is_ordered:
            return value
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of the choices {self.choices}")
        return self.choices.index(value)

    def suggest(self, trial: optuna.Trial, name: str):
        if self.is_ordered:
            return self.choices[trial.suggest_int(name + INDEX_SUFFIX, 0, len(self.choices) - 1)]
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

    @model_validator(mode="after")
    def _bounds(self):
        for key in ("min", "max"):   # NaN compares false both ways: every trial would pass, or none
            v = getattr(self, key)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{key}: a finite number must hold, got {v}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min <= max must hold, got min={self.min:g}, max={self.max:g}")
        return self


class LoadSpec(_Strict):
    """How the trace is sent (tuner.workload.plan): which requests, when, how many at once."""
    qps: float | None = Field(None, gt=0, description="performance_serving -X: requests per second")
    duration: float | None = Field(None, gt=0, description="performance_serving -T: seconds; N = int(X*T) "
                                   "requests (arrivals=trace: the window of the trace replayed)")
    requests: int | None = Field(None, ge=1, description="number of requests (instead of int(X*T))")
    arrivals: Literal["poisson", "gamma", "constant", "trace"] = "poisson"
    cv: float | None = Field(None, gt=0, description="gamma only: coefficient of variation of the gaps "
                             "(1 = Poisson, > 1 bursty)")
    speedup: float | None = Field(None, gt=0, description="trace only: replay the trace's timestamps this much faster")
    concurrency: int | None = Field(None, ge=1, description="closed loop: at most N requests in flight")
    round_gaps: bool = Field(False, description="poisson only: gaps of mean round(1/X, 2) s, as performance_serving "
                             "draws them (default: mean 1/X exactly; rounded, X >= 200 sends all at once)")
    max_tokens: int | None = Field(None, ge=2, description="leave out the trace's requests whose prompt + output "
                                   "tokens exceed this (e.g. below the stack's seq_length / max_model_len)")
    seed: int = 0
    stream: bool = True
    parameters: dict[str, Any] = Field(default_factory=lambda: {"do_sample": False, "return_full_text": True})
    request_timeout: float = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _coherent(self):
        for key in ("qps", "duration", "cv", "speedup", "request_timeout"):
            v = getattr(self, key)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{key}: a finite number must hold, got {v}")
        planned = self.requests if self.requests is not None else (
            self.qps * self.duration if self.qps is not None and self.duration is not None else None)
        if planned is not None and planned > MAX_REQUESTS:  # every send is planned in memory first
            how = (f"requests={planned}" if self.requests is not None else
                   f"qps * duration = {self.qps:g} x {self.duration:g} = {planned:g}")
            raise ValueError(f"at most {MAX_REQUESTS:,} requests a trial must hold, got {how}")
        if self.cv is not None and self.arrivals != "gamma":
            raise ValueError(f"cv applies to arrivals=gamma only, arrivals is {self.arrivals}")
        if self.speedup is not None and self.arrivals != "trace":
            raise ValueError(f"speedup applies to arrivals=trace only, arrivals is {self.arrivals}")
        if self.round_gaps and self.arrivals != "poisson":
            raise ValueError(f"round_gaps applies to arrivals=poisson only, arrivals is {self.arrivals}")
        if self.arrivals == "trace":
            if self.qps is not None:
                raise ValueError("arrivals=trace sends at the trace's own times, so qps must be null (load.qps=null)")
        elif self.qps is None and self.concurrency is None:
            raise ValueError(f"arrivals={self.arrivals} needs qps (or a closed loop: concurrency)")
        elif self.requests is None and (self.qps is None or self.duration is None):
            raise ValueError("the number of requests needs requests, or qps and duration (N = int(X*T))")
        elif self.requests is None and int(self.qps * self.duration) < 1:
            raise ValueError(f"qps * duration >= 1 must hold, got {self.qps} * {self.duration}")
        return self

    @property
    def n_requests(self) -> int | None:
        """Requests in the plan (None for arrivals=trace with no cap: the trace's window decides)."""
        if self.requests is not None:
            return self.requests
        if self.qps is not None and self.duration is not None:
            return int(self.qps * self.duration)
        return None


class Timeouts(_Strict):
    ready: float = Field(120.0, gt=0)
    replay: float = Field(900.0, gt=0)


class StudySpace(_Strict):
    study: str
    description: str = ""
    backend: str = DEFAULT_BACKEND
    base_config: str
    trace: str
    trace_format: str = Field("auto", description="auto (detected from the content) or a format name "
                              "(tuner.workload.formats)")
    load: LoadSpec
    objectives: list[Objective]
    params: dict[str, Any]
    constraints: list[Constraint] = []
    repeats: int = Field(1, ge=1, description="measurements per configuration; the median is the objective")
    finalists: FinalistSpec = Field(default_factory=FinalistSpec)
    early_stop: EarlyStopSpec = Field(default_factory=EarlyStopSpec)
    slo: dict[str, Any] | None = Field(default_factory=dict, description="bounds the capacity_rps search holds")
    capacity: CapacitySpec = Field(default_factory=CapacitySpec)
    prescreen: PrescreenSpec | None = Field(None, description="simulate first; see tuner/screening/")
    n_trials: int = Field(20, ge=1)
    sampler: Literal["gp", "tpe", "nsga2", "random"] = "gp"
    startup_trials: int | None = Field(None, ge=0, description="random trials before the model takes over "
                                       "(default: gp 1, tpe 5)")
    seed: int | None = None
    max_failed_fraction: float = Field(0.0, ge=0, le=1)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    #: each stack's section (``embedded:``, ``llm_serving:``, ...), keyed by backend name
    stack_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """Top-level keys named after a registered stack are that stack's options section."""
        if isinstance(data, dict):
            names = set(stack_names())
            data = dict(data)
            sections = {k: data.pop(k) for k in list(data) if k in names}
            for k, v in sections.items():
                if v is not None and not isinstance(v, dict):
                    raise ValueError(f"{k}: a mapping of the {k} stack's options must hold, got {v!r}")
            data.setdefault("stack_options", {k: dict(v or {}) for k, v in sections.items()})
        return data

    @model_validator(mode="after")
    def _check(self):
        check_study_name(self.study)
        if self.backend not in stack_names():
            raise ValueError(f"backend must be one of {stack_names()}, got {self.backend!r}")
        # every stack's section is checked, not only the chosen one's: a typo there is a bad file too,
        # and it would surface only on the day that backend is picked
        for name in {self.backend, *self.stack_options}:
            try:
                opts = get_stack(name).parse_options(self.stack_options.get(name, {}))
            except ValidationError as err:
                e = err.errors()[0]
                where = ".".join(str(x) for x in (name, *e["loc"]))
                raise ValueError(f"{where}: {e['msg']}, found {e.get('input')!r}") from None
            self.stack_options[name] = opts.model_dump()
        from tuner.workload.formats import format_names
        if self.trace_format not in format_names():
            raise ValueError(f"trace_format must be one of {format_names()}, got {self.trace_format!r}")
        if not self.objectives:
            raise ValueError("at least one objective is needed")
        self.slo = check_slo(self.slo or {})
        if self.capacity_search and not self.slo:
            raise ValueError(f"the {CAPACITY} objective needs an 'slo:' mapping, e.g. "
                             "{ttft_p99: 2.0, tpot_p99: 0.1, failed: 0}, found none")
        if self.slo and not self.capacity_search:
            raise ValueError(f"slo: applies to the {CAPACITY} objective, which the objectives do not name; "
                             "for limits at a fixed load use constraints:")
        named = [(f"objectives[{i}].name", o.name) for i, o in enumerate(self.objectives)]
        named += [(f"constraints[{i}].metric", c.metric) for i, c in enumerate(self.constraints)]
        named += [("early_stop.metric", self.early_stop.metric)]
        for where, metric in named:
            if not is_known_metric(metric):  # else every trial misses it: all infeasible, or all FAIL
                raise ValueError(f"{where}: a metric a trial reports must be named, got {metric!r}; "
                                 f"known: {known_metrics_text()}")
        for i, c in enumerate(self.constraints):
            if c.min is None and c.max is None:
                raise ValueError(f"constraints[{i}] ({c.metric}): a min or a max must be given")
        check_measurable(named, self.backend, get_stack(self.backend).capabilities(self.backend_options()))
        if self.prescreen and get_stack(self.backend).surrogate is None:
            raise ValueError(f"prescreen: needs a surrogate of the {self.backend} stack to simulate it, and that "
                             "stack declares none; remove prescreen:")
        if self.prescreen and self.prescreen.probe_fraction and self.repeats > 1:
            raise ValueError("prescreen.probe_fraction and repeats > 1 cannot be combined (a probe is one run)")
        flat = flatten_params(self.params)
        if not flat:
            raise ValueError("params names no parameter to tune")
        ignored = get_stack(self.backend).ignored_keys(self.backend_options())
        for key in flat:
            if key in ignored:
                raise ValueError(f"params.{key}: a key the {self.backend} stack applies on this platform must be "
                                 f"tuned, found one {ignored[key]}")
        return self

    @property
    def capacity_search(self) -> bool:
        """True when a trial searches the highest rate meeting the SLOs instead of replaying the load once."""
        return any(o.name == CAPACITY for o in self.objectives)

    def param_specs(self) -> dict[str, ParamSpec]:
        return flatten_params(self.params)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw a configuration; its values are also kept as the trial's ``config`` user attribute."""
        config = {key: spec.suggest(trial, key) for key, spec in self.param_specs().items()}
        trial_record.write(trial, config=config)
        return config

    def config_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """Config values of a trial's stored Optuna params (ordered categoricals are positions there)."""
        out = {}
        for key, spec in self.param_specs().items():
            name = spec.stored_name(key)
            if name in params:
                out[key] = spec.value_of(params[name])
            elif key in params:     # a trial stored before the choice was ordered: the value itself
                out[key] = params[key]
        return out

    def stored_params(self, config: dict[str, Any]) -> dict[str, Any]:
        """Optuna params for a configuration, for ``enqueue_trial``; the inverse of ``config_of``."""
        specs = self.param_specs()
        return {specs[k].stored_name(k): specs[k].stored_of(v) for k, v in config.items() if k in specs}

    def backend_options(self) -> dict[str, Any]:
        """The chosen stack's options, validated by its options model (defaults filled in)."""
        return dict(self.stack_options.get(self.backend, {}))


#: figures only a power probe gives (serving.probes: NVML's energy counter, npu-smi's power)
ENERGY = ("energy_j", "energy_j_per_token")


def check_measurable(named: list[tuple[str, str]], backend: str, caps) -> None:
    """Refuse (ValueError) an objective, constraint or early-stop metric the stack cannot report with
    these options: every trial would fail or be infeasible, and the study would learn nothing."""
    for where, metric in named:
        if metric in ENERGY and not caps.power:
            raise ValueError(f"{where}: {metric} needs a stack that reports power (a power probe: NVML on a GPU, "
                             f"npu-smi on Ascend); backend {backend} has none"
                             + (f" ({caps.note})" if caps.note else ""))
        if metric == "utilisation" and caps.utilisation is False:
            raise ValueError(f"{where}: utilisation needs a stack that reports a device's busy figure; backend "
                             f"{backend} has none" + (f" ({caps.note})" if caps.note else "")
                             + "; tune total_time or latency objectives instead")


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
