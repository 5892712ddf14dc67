"""Study settings and experiment files, validated into frozen dataclasses.

The Python API and the experiment YAML share :class:`StudySettings`, so both give
the same error for the same mistake: ``<file>: <key>: <constraint, value, fix>``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import os
import re
import sys
import sysconfig
import traceback
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tuner._files import read_yaml, shown
from tuner.errors import ConfigError, did_you_mean, unknown_key
from tuner.search_space import SearchSpace, load_space
from tuner.tracking import masked

RESERVED_PREFIX = "tuner."
DEFAULT_REGION = "us-east-1"
# What budget_usd caps, and the study total (CostMeter.totals) that measures it
BUDGET_FIGURES = {"cluster": "cluster_usd", "trials": "cost_usd"}
BUDGET_SCOPES = tuple(BUDGET_FIGURES)
# Resources Ray names in lower case in `tune.with_resources`; others are custom resources.
_RAY_RESOURCES = ("cpu", "gpu", "memory")
# ASHA's default first rung. On the benchmark's choice tasks (LCBench, epochs 2-52) a first
# cut after 2 iterations beat a cut after 1 (benchmarks/results/choice/candidates.md); the
# first epochs rank configurations poorly.
FIRST_RUNG = 2
# TPE's candidates per suggestion (Optuna's ``n_ei_candidates``, default 24): the candidate
# with the best ratio of good to bad density among this many draws is tried. More draws
# exploit the densities harder; 1024 beat 24 on the benchmark's choice tasks, and 256, as
# good there, did worse on the held-out tasks (benchmarks/results/choice/candidates.md,
# round 7). The price is driver CPU: with 7
# parameters, ~50 ms a suggestion after 100 trials and ~0.5 s after 2000 (24: 6 and 42 ms;
# `python -m benchmarks.tpe_cost`), nothing beside trials of minutes; lower it for
# thousands of trials of seconds.
TPE_CANDIDATES = 1024
# TPE's random start-up trials before its densities choose (Optuna's ``n_startup_trials``,
# default 10). With ASHA stopping most trials after a couple of iterations, 5 did better than
# 10 on the benchmark's choice tasks (round 8), and 20 or 30 worse; on its held-out tasks 5
# was no different from 10 with 4 workers and better with 1.
TPE_STARTUP_TRIALS = 5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class StudySettings:
    """Everything about a study except the trainable and the space: the one definition
    of every setting and its default, which ``tuner.tune(**settings)``, the experiment
    YAML and the CLI flags all build through :func:`settings_from`.

    ``seed: None`` draws a random seed when the study starts (and says which);
    ``grace_period: None`` is ASHA's first rung at :data:`FIRST_RUNG` iterations (``max_t``
    when smaller), the first iteration saying too little of how a trial will end;
    ``resources_per_trial`` keys ``cpu``, ``gpu`` and ``memory`` are stored lower-case.
    """

    metric: str
    mode: str = "max"
    num_samples: int = 20
    max_t: int = 30
    grace_period: int | None = None  # None: FIRST_RUNG, or max_t when smaller
    reduction_factor: float = 3
    tpe_multivariate: bool = False  # Optuna's multivariate TPE; independent TPE did better with ASHA
    tpe_n_ei_candidates: int = TPE_CANDIDATES  # TPE's draws per suggestion (Optuna's default: 24)
    tpe_n_startup_trials: int = TPE_STARTUP_TRIALS  # random trials first (Optuna's default: 10)
    max_failures: int = 3
    resources_per_trial: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1})
    max_concurrent_trials: int | None = None
    storage_path: str = "tuner_results"
    name: str | None = None
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None
    seed: int | None = 0
    checkpoints_to_keep: int = 2
    ray_address: str | None = None
    region: str = DEFAULT_REGION
    default_instance_type: str = "m5.large"  # prices nodes that carry no labels
    default_market: str = "on-demand"
    prices: str | None = None  # a price CSV replacing the shipped catalog
    live_prices: bool = False  # lay current AWS prices (cached an hour) over the catalog
    budget_usd: float | None = None
    budget_scope: str = "cluster"  # what budget_usd caps: the cluster's bill, or "trials" only
    budget_alerts: tuple[float, ...] = (50, 80, 100)  # percent of budget_usd
    seconds_per_iteration: float | None = None  # for `tuner estimate`
    aws_cluster: str | None = None  # the Ray cluster_name on AWS: tag its instances with the study

    def __post_init__(self) -> None:
        if self.grace_period is None and isinstance(self.max_t, int) and self.max_t >= 1:
            object.__setattr__(self, "grace_period", min(FIRST_RUNG, self.max_t))
        self.validate(_BUILDING)
        resources = {k.lower() if k.lower() in _RAY_RESOURCES else k: v
                     for k, v in self.resources_per_trial.items()}
        object.__setattr__(self, "resources_per_trial", resources)

    @property
    def first_rung(self) -> int:
        """ASHA's grace period: ``grace_period``, or its default resolved at construction."""
        assert self.grace_period is not None  # __post_init__ resolved it
        return self.grace_period

    def validate(self, source: str) -> None:
        """Raise :class:`ConfigError` naming ``source`` for the first invalid setting."""
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(source, key, msg)

        if not isinstance(self.metric, str) or not self.metric:
            raise bad("metric", f"must be the name of a metric your trainable reports, got "
                      f"{self.metric!r}")
        if self.metric.startswith(RESERVED_PREFIX):
            raise bad("metric", f"names starting with `{RESERVED_PREFIX}` are reserved for "
                      f"tuner's own metrics; report it under another name, got {self.metric!r}")
        if self.mode not in ("min", "max"):
            raise bad("mode", f"must be 'min' or 'max', got {self.mode!r}")
        for key in ("num_samples", "max_t", "grace_period", "checkpoints_to_keep", "tpe_n_ei_candidates",
                    "tpe_n_startup_trials"):
            _positive_int(source, key, getattr(self, key))
        if self.first_rung > self.max_t:
            raise bad("grace_period", f"must be <= max_t, got grace_period={self.grace_period}, "
                      f"max_t={self.max_t}; lower grace_period or raise max_t")
        rf = self.reduction_factor
        if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not 1 < rf < math.inf:
            raise bad("reduction_factor", f"must be a number > 1 (ASHA keeps 1/reduction_factor "
                      f"of trials at each rung), got {rf!r}")
        for flag in ("tpe_multivariate", "live_prices"):
            if not isinstance(getattr(self, flag), bool):
                raise bad(flag, f"must be true or false, got {getattr(self, flag)!r}")
        mf = self.max_failures
        if isinstance(mf, bool) or not isinstance(mf, int) or mf < -1:
            raise bad("max_failures", f"must be an integer >= 0 (or -1 for unlimited retries), "
                      f"got {mf!r}")
        if self.max_concurrent_trials is not None:
            _positive_int(source, "max_concurrent_trials", self.max_concurrent_trials)
        res = self.resources_per_trial
        if not isinstance(res, Mapping) or not res:
            raise bad("resources_per_trial", f"must map resource names to amounts, e.g. "
                      f"{{cpu: 1}}, got {res!r}")
        for k, v in res.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise bad(f"resources_per_trial.{k}", f"must be a finite number >= 0, got {v!r}")
            near = did_you_mean(str(k).lower().rstrip("s").removeprefix("num_"), _RAY_RESOURCES)
            if str(k).lower() not in _RAY_RESOURCES and (near or not isinstance(k, str)):
                raise bad(f"resources_per_trial.{k}", f"unknown resource{near or ''}; Ray's are "
                          f"{', '.join(_RAY_RESOURCES)}; any other name must be a custom "
                          f"resource your nodes declare")
        if not isinstance(self.storage_path, str) or not self.storage_path:
            raise bad("storage_path", f"must be a directory path or URI, got "
                      f"{self.storage_path!r}")
        if self.name is not None and (not isinstance(self.name, str) or not _NAME.match(self.name)):
            raise bad("name", f"must be letters, digits, '.', '_' or '-', got {self.name!r}")
        seed = self.seed  # Optuna's TPE seeds numpy with it: 0 .. 2**32 - 1
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or not 0 <= seed < 2**32):
            raise bad("seed", f"must be an integer from 0 to 4294967295 (2**32 - 1), or null "
                      f"for a random one, got {seed!r}")
        b = self.budget_usd
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))
                              or not 0 < b < math.inf):
            raise bad("budget_usd", f"must be a finite number of dollars > 0 (or null for no "
                      f"budget), got {b!r}")
        if self.budget_scope not in BUDGET_SCOPES:
            raise bad("budget_scope", f"must be one of {', '.join(BUDGET_SCOPES)} ('cluster': "
                      f"the bill while the study runs, head and idle nodes included; 'trials': "
                      f"the trials' own dollars), got {self.budget_scope!r}")
        alerts = self.budget_alerts
        if not isinstance(alerts, (list, tuple)) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a <= 100
                for a in alerts):
            raise bad("budget_alerts", f"must be a list of percentages in (0, 100], e.g. "
                      f"[50, 80, 100], or [] for no alerts, got {alerts!r}")
        spi = self.seconds_per_iteration
        if spi is not None and (isinstance(spi, bool) or not isinstance(spi, (int, float))
                                or spi <= 0):
            raise bad("seconds_per_iteration", f"must be a number of seconds > 0, got {spi!r}")
        from tuner.cost.catalog import Market, PriceCatalog

        Market.parse(self.default_market, source, key="default_market")
        try:
            PriceCatalog.load(self.prices).get(self.default_instance_type, self.region)
        except ConfigError as exc:
            ours = {"region": "region", "instance_type": "default_instance_type"}.get(exc.key)
            if ours is None and not exc.key and self.prices and exc.source == self.prices:
                raise bad("prices", f"{self.prices}: {exc.message}; name a price CSV (relative "
                          f"to the experiment file), or drop `prices:` for the shipped "
                          f"catalog (`tuner prices` lists it)") from None
            if ours is None:  # a line of the price file is bad: the error names it
                raise
            raise bad(ours, exc.message) from None
        for key in ("mlflow_uri", "mlflow_experiment", "ray_address", "prices", "aws_cluster"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise bad(key, f"must be a non-empty string or null, got {value!r}")
        if self.mlflow_uri is not None:
            _check_mlflow_uri(source, self.mlflow_uri)


# Tracking store schemes MLflow 3 opens (mlflow.tracking._tracking_service.utils): its file
# and REST stores, and SQLAlchemy's for these databases (``postgresql+psycopg2`` too).
_MLFLOW_SCHEMES = {"file", "http", "https", "databricks"}
_MLFLOW_DATABASES = {"sqlite", "postgresql", "mysql", "mssql"}


def _check_mlflow_uri(source: str, uri: str) -> None:
    """Refuse a tracking URI whose scheme MLflow has no store for, a file store (a plain path
    too) MLflow 3 refuses, and a sqlite URI whose path went into its host part."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")  # MLflow's opt-in
    if scheme in ("", "file") and uri.lower() not in _MLFLOW_SCHEMES and not allowed:
        name = os.path.splitext(os.path.basename(parts.path.rstrip("/")) or "mlflow")[0]
        raise ConfigError(source, "mlflow_uri", f"{uri!r} is a file store, which MLflow 3 "
                          f"refuses; use a database, e.g. sqlite:///{name}.db (or set "
                          f"MLFLOW_ALLOW_FILE_STORE=true to keep a file store)")
    if scheme == "sqlite" and parts.netloc:
        raise ConfigError(source, "mlflow_uri", f"{uri!r} puts the file in the URI's host part; "
                          f"a sqlite URI has three slashes before a relative path "
                          f"(sqlite:///{parts.netloc}{parts.path}) and four before an absolute one")
    if not scheme or scheme in _MLFLOW_SCHEMES or scheme.split("+")[0] in _MLFLOW_DATABASES:
        return
    plugins = {e.name for e in importlib.metadata.entry_points(group="mlflow.tracking_store")}
    if scheme not in plugins:
        raise ConfigError(source, "mlflow_uri", f"MLflow has no tracking store for scheme "
                          f"{scheme!r} (got {masked(uri)!r}); use sqlite:///mlflow.db, "
                          f"file:///path, http(s)://host:port, databricks, or a database URI "
                          f"(postgresql://, mysql://, mssql://)")


def _positive_int(source: str, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(source, key, f"must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Experiment:
    """An experiment file: where the trainable and the space are, and the study settings."""

    trainable: str  # "module:function"
    space: SearchSpace
    settings: StudySettings
    source: str = "experiment"
    base_dir: str = "."

    def load_trainable(self) -> Callable[..., Any]:
        return import_trainable(self.trainable, self.source, self.base_dir)


_SETTING_KEYS = {f.name for f in fields(StudySettings)}
_SCHEDULER_KEYS = {"max_t", "grace_period", "reduction_factor"}
_EXPERIMENT_KEYS = (_SETTING_KEYS - _SCHEDULER_KEYS) | {"trainable", "space", "scheduler"}


def load_experiment(path: str | os.PathLike[str]) -> Experiment:
    """Read and validate an experiment YAML; relative `space:` and `prices:` paths are from
    the file."""
    path = os.fspath(path)
    source = shown(path)
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", "an experiment file is a mapping with at least "
                          "`trainable:`, `space:` and `metric:`")
    if "available_node_types" in data:
        raise ConfigError(source, "", f"is a Ray cluster config, not an experiment; start the "
                          f"cluster with it (`ray up {source}`, see cluster/README.md), then run "
                          f"an experiment on it (e.g. examples/digits_mlp.yaml)")
    if not {"trainable", "space", "metric"} & set(data) and any(
            isinstance(v, Mapping) and "type" in v for v in data.values()):
        raise ConfigError(source, "", f"is a search space, not an experiment; an experiment "
                          f"file names it under `space:` (e.g. `space: {source}`, beside "
                          f"`trainable:` and `metric:`; see examples/digits_mlp.yaml)")
    for key in data:
        if key in _SCHEDULER_KEYS:
            raise ConfigError(source, key, f"is an ASHA setting and goes under `scheduler:`, "
                              f"e.g. `scheduler: {{{key}: {data[key]}}}`")
        if key not in _EXPERIMENT_KEYS:
            raise unknown_key(source, str(key), _EXPERIMENT_KEYS)
    for key in ("trainable", "space", "metric"):
        if key not in data:
            raise ConfigError(source, key, "is required (see examples/digits_mlp.yaml)")
    base_dir = os.path.dirname(os.path.abspath(path))

    trainable = data["trainable"]
    if not isinstance(trainable, str) or not re.match(r"^[\w.]+:\w+$", trainable):
        dotted = (isinstance(trainable, str) and re.match(r"^[\w.]+\.\w+$", trainable)
                  and not trainable.endswith(".py"))
        hint = (f"'{trainable.rpartition('.')[0]}:{trainable.rpartition('.')[2]}'" if dotted
                else "'examples.digits_mlp:train'")
        raise ConfigError(source, "trainable", f"must be 'module:function', e.g. {hint}, "
                          f"got {trainable!r}")

    space_ref = data["space"]
    if isinstance(space_ref, str):
        space_path = space_ref if os.path.isabs(space_ref) else os.path.join(base_dir, space_ref)
        if not os.path.exists(space_path):
            raise ConfigError(source, "space", f"file {space_ref!r} not found (looked at "
                              f"{space_path}); give a path relative to the experiment file")
        space = load_space(space_path)
    elif isinstance(space_ref, Mapping):
        space = load_space(space_ref)
    else:
        raise ConfigError(source, "space", "must be a path to a space YAML or an inline mapping")

    settings = {k: v for k, v in data.items() if k in _SETTING_KEYS}
    if isinstance(settings.get("prices"), str) and settings["prices"]:  # like `space:`
        settings["prices"] = os.path.join(base_dir, settings["prices"])
    scheduler = data.get("scheduler") or {}
    if not isinstance(scheduler, Mapping):
        raise ConfigError(source, "scheduler", "must be a mapping of max_t, grace_period, "
                          "reduction_factor")
    for key in scheduler:
        if key in _EXPERIMENT_KEYS:
            raise ConfigError(source, f"scheduler.{key}", f"is not an ASHA setting (those are "
                              f"{', '.join(sorted(_SCHEDULER_KEYS))}); put it at the top level, "
                              f"e.g. `{key}: {scheduler[key]}`")
        if key not in _SCHEDULER_KEYS:
            raise unknown_key(source, str(key), _SCHEDULER_KEYS, where="scheduler")
    settings.update(scheduler)
    try:
        built = settings_from(settings, source)
    except ConfigError as exc:  # named as the file has it
        if exc.source != source or exc.key not in scheduler:
            raise
        raise ConfigError(source, f"scheduler.{exc.key}", exc.message) from None
    return Experiment(trainable, space, built, source, base_dir)


_BUILDING = "StudySettings"  # the source named until settings_from says which


class _Unset:
    """A setting not given (the default applies), as distinct from ``None``."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def settings_from(values: Mapping[str, Any], source: str) -> StudySettings:
    """The one way settings are built: from ``tune()``'s keywords, an experiment file's
    keys, the command line or a study record. Values that are :data:`UNSET` take their
    default; errors name ``source`` (a file name, ``tune()``, ``command line``)."""
    values = {k: v for k, v in values.items() if v is not UNSET}
    for key in values:
        if key == "scheduler" and isinstance(values[key], Mapping):  # tune(scheduler={...})
            for inner in values[key]:
                if inner not in _SCHEDULER_KEYS:
                    raise unknown_key(source, str(inner), _SCHEDULER_KEYS, where=key)
            keywords = ", ".join(f"{k}={v!r}" for k, v in values[key].items())
            raise ConfigError(source, key, f"is the experiment file's section; pass its "
                              f"settings as keywords of their own: tune(..., {keywords})")
        if key not in _SETTING_KEYS:
            raise unknown_key(source, str(key), _SETTING_KEYS)
    if isinstance(values.get("budget_alerts"), list):
        values["budget_alerts"] = tuple(values["budget_alerts"])
    metric = values.get("metric")
    if "mode" not in values and isinstance(metric, str) and _reads_as_a_loss(metric):
        raise ConfigError(source, "mode", f"is not set, and {metric!r} reads as a loss: the "
                          f"default, max, would maximise it; set mode: min (or mode: max if a "
                          f"higher {metric} is better)")
    try:
        return StudySettings(**values)
    except ConfigError as exc:
        if exc.source != _BUILDING:  # an error in another file (a price CSV) names that file
            raise
        raise ConfigError(source, exc.key, exc.message) from None
    except TypeError as exc:  # a required setting (metric) missing
        raise ConfigError(source, "metric", f"is required ({exc})") from None


_LOSS_WORDS = {"loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity", "ppl", "regret"}


def _reads_as_a_loss(metric: str) -> bool:
    """Whether a word of ``metric`` (split at ``_ . / -`` and case changes) names a quantity
    one minimises: ``val_loss``, ``error_rate``, ``valid/mse``, ``trainLoss``."""
    words = re.split(r"[_./\-\s]+|(?<=[a-z])(?=[A-Z])", metric)
    return any(w.lower() in _LOSS_WORDS for w in words)


def with_overrides(settings: StudySettings, source: str, **changes: Any) -> StudySettings:
    """``settings`` with ``changes`` (e.g. from the command line), validated as ``source``."""
    return settings_from({**_fields_of(settings), **changes}, source)


def _fields_of(settings: StudySettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def import_trainable(ref: str, source: str = "trainable", base_dir: str = ".") -> Callable[..., Any]:
    """Import ``module:function``, looking in ``base_dir`` and the working directory too."""
    module_name, _, attr = ref.partition(":")
    if module_name.endswith(".py"):
        raise ConfigError(source, "trainable", f"names a module, not a file: write "
                          f"{module_name[:-3]}:{attr} (the file {module_name} beside the "
                          f"experiment file or in the working directory)")
    for extra in (os.getcwd(), base_dir):
        if extra not in sys.path:
            sys.path.insert(0, extra)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # not found, or its code raised while it was imported
        raise ConfigError(source, "trainable", _import_failure(module_name, exc)) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(source, "trainable", f"module {module_name!r} has no function "
                          f"{attr!r}")
    check_trainable(fn, source, ref)
    return fn


def check_trainable(fn: Callable[..., Any], source: str, name: str | None = None) -> None:
    """Refuse a function Ray Tune cannot call as ``fn(config)``: its every try would fail
    with Ray's traceback, after the cluster started."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C function: nothing to check
        return
    try:
        signature.bind({})
    except TypeError:
        shown_name = name or getattr(fn, "__qualname__", repr(fn))
        raise ConfigError(source, "trainable", f"{shown_name}{signature} cannot be called "
                          f"with one argument, the trial's config; define it as "
                          f"`def {getattr(fn, '__name__', 'train')}(config):`") from None


def _import_failure(module_name: str, exc: Exception) -> str:
    """Why ``module_name`` did not import: not found at all, found but importing a package
    that is not installed, or its code raised (with the exception's file and line)."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and f"{module_name}.".startswith(f"{missing}."):  # it, or its package
        return (f"cannot import module {module_name!r} ({type(exc).__name__}: {exc}); put "
                f"it beside the experiment file or in the working directory, or install it")
    # the innermost line of the user's code: not import machinery, the standard library or
    # an installed package (unless the module is one)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)[1:]  # [1:]: import_trainable
              if not f.filename.startswith("<")]
    libraries = tuple({sysconfig.get_path(p) for p in ("stdlib", "platstdlib", "purelib",
                                                       "platlib")})
    frames = [f for f in frames if not f.filename.startswith(libraries)] or frames
    where = (f"{exc.filename}:{exc.lineno}" if isinstance(exc, SyntaxError) else
             f"{frames[-1].filename}:{frames[-1].lineno}" if frames else module_name)
    if missing is not None:
        return (f"module {module_name!r} imports {missing!r}, which is not installed ({where}); "
                f"install it (pip install {missing.partition('.')[0]}) or run where it is "
                f"installed")
    lines = str(exc).strip().splitlines()
    summary = type(exc).__name__ + (f": {lines[0][:200]}" if lines else "")
    return f"importing module {module_name!r} raised {summary} ({where}); fix the error there"
