"""Search spaces as data: YAML files or dicts mirroring Optuna's suggest API.

A space maps each parameter name to one of::

    lr:         {type: float, low: 1.0e-4, high: 0.1, log: true}
    width:      {type: int, low: 16, high: 256, step: 16}
    activation: {type: categorical, choices: [relu, tanh]}
    momentum:   {type: float, low: 0.5, high: 0.99, when: {solver: sgd}}
    max_iter:   200            # a constant, passed to every trial

``when`` makes a parameter conditional: it is suggested only when every named
parameter currently has the given value (or one of a list of values). The space
becomes an Optuna define-by-run function (:meth:`SearchSpace.suggest`), which is
what Ray Tune's ``OptunaSearch`` accepts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from tuner._files import read_yaml, shown
from tuner.errors import ConfigError, did_you_mean, unknown_key

Scalar = None | bool | int | float | str
EDGE = 0.02  # "at the end of its range": within 2% of it, in the parameter's own scale


class _Trial(Protocol):  # the part of optuna.Trial a space uses
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1,
                    log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Condition:
    """Active when parameter ``parent`` takes one of ``values``."""

    parent: str
    values: tuple[Scalar, ...]

    def holds(self, chosen: Mapping[str, Any]) -> bool:
        return self.parent in chosen and chosen[self.parent] in self.values


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: tuple[Condition, ...] = ()

    def suggest(self, trial: _Trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: tuple[Condition, ...] = ()

    def suggest(self, trial: _Trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Scalar, ...]
    when: tuple[Condition, ...] = ()

    def suggest(self, trial: _Trial) -> Scalar:
        return trial.suggest_categorical(self.name, list(self.choices))


Param = FloatParam | IntParam | CategoricalParam


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters (parents before the parameters they condition)."""

    params: tuple[Param, ...]
    constants: Mapping[str, Scalar] = field(default_factory=dict)
    source: str = "space"

    def suggest(self, trial: _Trial) -> dict[str, Scalar]:
        """Optuna define-by-run: suggest every active parameter; return the constants."""
        chosen: dict[str, Any] = {}
        for param in self.params:
            if all(cond.holds(chosen) for cond in param.when):
                chosen[param.name] = param.suggest(trial)
        return dict(self.constants)

    def at_edge(self, config: Mapping[str, Any], within: float = EDGE) -> dict[str, str]:
        """The numeric parameters whose value in ``config`` lies within ``within`` of the
        low or the high end of their range, in the parameter's own scale (log where the space
        says so): name -> "low" or "high". A best value there may have a better one beyond."""
        ends: dict[str, str] = {}
        for p in self.params:
            v = config.get(p.name)
            if (isinstance(p, CategoricalParam) or p.low == p.high or isinstance(v, bool)
                    or not isinstance(v, (int, float)) or (p.log and v <= 0)):
                continue
            scale = math.log if p.log else float
            at = (scale(v) - scale(p.low)) / (scale(p.high) - scale(p.low))
            if at <= within:
                ends[p.name] = "low"
            elif at >= 1 - within:
                ends[p.name] = "high"
        return ends

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params) + tuple(self.constants)

    def to_dict(self) -> dict[str, Any]:
        """The space in the shape it was written in (for logging)."""
        out: dict[str, Any] = {}
        for p in self.params:
            spec: dict[str, Any] = {"type": _TYPE_OF[type(p)]}
            if isinstance(p, CategoricalParam):
                spec["choices"] = list(p.choices)
            else:
                spec.update(low=p.low, high=p.high)
                if p.log:
                    spec["log"] = True
                if p.step is not None and not (isinstance(p, IntParam) and p.step == 1):
                    spec["step"] = p.step
            if p.when:
                spec["when"] = {c.parent: list(c.values) for c in p.when}
            out[p.name] = spec
        out.update(self.constants)
        return out


_TYPE_OF = {FloatParam: "float", IntParam: "int", CategoricalParam: "categorical"}
# Other libraries' names for a distribution (Ray Tune's, Hyperopt's), and how to write it here
_OTHER_NAMES = {
    "uniform": "type: float, low: ..., high: ...",
    "loguniform": "type: float, low: ..., high: ..., log: true",
    "quniform": "type: float, low: ..., high: ..., step: ...",
    "randint": "type: int, low: ..., high: ...",
    "lograndint": "type: int, low: ..., high: ..., log: true",
    "qrandint": "type: int, low: ..., high: ..., step: ...",
    "integer": "type: int, low: ..., high: ...",
    "choice": "type: categorical, choices: [...]",
    "bool": "type: categorical, choices: [true, false]",
}

_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}


def load_space(space: str | os.PathLike[str] | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """Load a space from a YAML file path, a dict of the same shape, or pass one through.

    Raises:
        ConfigError: naming the file, the parameter and the fix.
    """
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return parse_space(space, source="space")
    if not isinstance(space, (str, os.PathLike)):
        raise ConfigError("tune()", "space", f"must be a path to a space YAML, a mapping of "
                          f"parameters or a SearchSpace, got {type(space).__name__} {space!r}")
    path = os.fspath(space)
    return parse_space(read_yaml(path), source=shown(path))


def parse_space(data: Any, source: str = "space") -> SearchSpace:
    """Validate a space given as plain data (the parsed YAML)."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(source, "", "a space is a mapping of parameter names to specs, e.g. "
                          "`lr: {type: float, low: 1.0e-4, high: 0.1, log: true}`")
    params: list[Param] = []
    constants: dict[str, Scalar] = {}
    for name, spec in data.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(source, str(name), "parameter names must be non-empty strings")
        if name.startswith("tuner."):
            raise ConfigError(source, name, "names starting with `tuner.` are reserved; rename it")
        if isinstance(spec, Mapping):
            params.append(_parse_param(source, name, spec))
        elif _is_scalar(spec):
            constants[name] = spec
        else:
            raise ConfigError(source, name, "expected a mapping with `type:` or a constant value, "
                              f"got {type(spec).__name__}")
    return SearchSpace(params=_order(source, params), constants=constants, source=source)


def _parse_param(source: str, name: str, spec: Mapping[str, Any]) -> Param:
    kind = spec.get("type")
    if kind is None:
        for key in spec:  # `tpye:` is a misspelt `type:`, not a missing one
            if did_you_mean(str(key), ["type"]):
                raise unknown_key(source, str(key), set().union(*_KEYS.values()), where=name)
        raise ConfigError(source, f"{name}.type", "is required: float, int or categorical (e.g. "
                          "`{type: float, low: 0.0001, high: 0.1, log: true}`)")
    if kind not in _KEYS:
        hint = (f"; write it as `{{{_OTHER_NAMES[kind]}}}`" if kind in _OTHER_NAMES
                else did_you_mean(str(kind), _KEYS))
        raise ConfigError(source, f"{name}.type", f"must be one of float, int, categorical, got "
                          f"{kind!r}{hint}")
    for key in spec:
        if key not in _KEYS[kind]:
            raise unknown_key(source, str(key), _KEYS[kind], where=name)
    when = _parse_when(source, name, spec.get("when"))
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(source, f"{name}.choices", "needs a non-empty list, e.g. "
                              "`choices: [relu, tanh]`")
        for c in choices:
            if not _is_scalar(c):
                raise ConfigError(source, f"{name}.choices", "choices must be strings, numbers, "
                                  f"booleans or null, got {c!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(source, f"{name}.choices", f"has duplicates: {list(choices)}")
        return CategoricalParam(name, tuple(choices), when)

    is_int = kind == "int"
    low = _number(source, name, "low", spec.get("low"), is_int)
    high = _number(source, name, "high", spec.get("high"), is_int)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(source, f"{name}.log", f"must be true or false, got {log!r}")
    step_raw = spec.get("step")
    step = None if step_raw is None else _number(source, name, "step", step_raw, is_int)
    if low > high:
        raise ConfigError(source, name, f"needs low <= high, got low={low}, high={high}; "
                          f"swap them (low: {high}, high: {low})")
    if log and low <= 0:
        raise ConfigError(source, name, f"log=true needs low > 0, got low={low}")
    if step is not None:
        if step <= 0:
            raise ConfigError(source, f"{name}.step", f"needs step > 0, got step={step}")
        if log and step != 1:
            raise ConfigError(source, name, f"log=true cannot be combined with step={step}; "
                              "drop one of them")
        if step > high - low > 0:
            raise ConfigError(source, f"{name}.step", f"step={step} is larger than the range "
                              f"{low}..{high}, so only low would be sampled; use a step <= "
                              f"{high - low:g} or widen the range")
        _check_step_fits(source, name, low, high, step, is_int)
    if is_int:
        return IntParam(name, int(low), int(high), log, int(step or 1), when)
    return FloatParam(name, float(low), float(high), log, None if step is None else float(step),
                      when)


def _check_step_fits(source: str, name: str, low: float, high: float, step: float,
                     is_int: bool) -> None:
    """Refuse a ``high`` that is not ``low`` plus a whole number of steps: Optuna would trim
    it silently. Decimal, as Optuna's check (``0.1 * 3`` is not ``0.3`` in binary)."""
    d_low, d_high, d_step = (Decimal(str(v)) for v in (low, high, step))
    if (d_high - d_low) % d_step == 0:
        return
    below = d_low + (d_high - d_low) // d_step * d_step

    def show(value: Decimal | float) -> str:
        return str(int(value)) if is_int else repr(float(value))

    raise ConfigError(source, f"{name}.high", f"high {show(high)} is not low {show(low)} plus "
                      f"a multiple of step {show(step)}, so Optuna would never sample above "
                      f"{show(below)}: use high {show(below)} or {show(below + d_step)}")


def _number(source: str, name: str, key: str, value: Any, is_int: bool) -> float:
    if value is None:
        raise ConfigError(source, f"{name}.{key}", f"is required for type "
                          f"{'int' if is_int else 'float'}")
    if isinstance(value, str):  # YAML 1.1 reads `1e-4` as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(source, f"{name}.{key}", f"must be a finite number, got {value!r}")
    if is_int and float(value) != int(value):
        raise ConfigError(source, f"{name}.{key}", f"must be a whole number for type int, got "
                          f"{value!r}; use type: float for fractions")
    return value


def _parse_when(source: str, name: str, when: Any) -> tuple[Condition, ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(source, f"{name}.when", "must map a parameter to its value(s), e.g. "
                          "`when: {solver: sgd}`")
    conditions = []
    for parent, values in when.items():
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values or not all(_is_scalar(v) for v in values):
            raise ConfigError(source, f"{name}.when.{parent}", "must be a value or a non-empty "
                              f"list of values, got {values!r}")
        conditions.append(Condition(str(parent), values))
    return tuple(conditions)


def _order(source: str, params: list[Param]) -> tuple[Param, ...]:
    """Put every parent before the parameters it conditions; reject unknown parents, cycles."""
    by_name = {p.name: p for p in params}
    for p in params:
        for cond in p.when:
            if cond.parent not in by_name:
                raise ConfigError(source, f"{p.name}.when", f"refers to parameter "
                                  f"{cond.parent!r}, which is not in the space"
                                  f"{did_you_mean(cond.parent, by_name)}")
            _check_condition(source, p.name, cond, by_name[cond.parent])
    ordered: list[Param] = []
    state: dict[str, str] = {}

    def visit(p: Param, chain: tuple[str, ...]) -> None:
        if state.get(p.name) == "done":
            return
        if state.get(p.name) == "visiting":
            raise ConfigError(source, f"{p.name}.when", "conditions form a cycle: "
                              + " -> ".join(chain + (p.name,)))
        state[p.name] = "visiting"
        for cond in p.when:
            visit(by_name[cond.parent], chain + (p.name,))
        state[p.name] = "done"
        ordered.append(p)

    for p in params:
        visit(p, ())
    return tuple(ordered)


def _check_condition(source: str, name: str, cond: Condition, parent: Param) -> None:
    """A condition must name values its parent can take, or ``name`` is never sampled."""
    key = f"{name}.when.{cond.parent}"
    if isinstance(parent, FloatParam):
        raise ConfigError(source, key, f"{cond.parent!r} is a float parameter, which almost "
                          f"never takes an exact value; condition on an int or categorical "
                          f"parameter instead")
    if isinstance(parent, CategoricalParam):
        missing = [v for v in cond.values if v not in parent.choices]
        if missing:
            raise ConfigError(source, key, f"{missing[0]!r} is not one of its choices "
                              f"{list(parent.choices)}; pick values from the choices")
        return
    for v in cond.values:
        if isinstance(v, bool) or not isinstance(v, int) or not parent.low <= v <= parent.high \
                or (v - parent.low) % parent.step:
            raise ConfigError(source, key, f"{v!r} is not a value {cond.parent!r} takes (whole "
                              f"numbers {parent.low}..{parent.high}, step {parent.step}); pick "
                              f"one it can take")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
