"""The study record: one JSON file per study that says what happened to every trial.

It lives with the driver in the study's directory (``<storage_path>/<name>/``, or
``./tuner_results/<name>/`` when ``storage_path`` is ``s3://...``), is rewritten
atomically, and is what ``tuner report`` and ``tuner resume`` read: the study's settings,
the MLflow run of the study and of each trial, each trial's status and metric.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

from tuner._files import read_text, write_json_atomic
from tuner.errors import ConfigError

if TYPE_CHECKING:
    from tuner.config import StudySettings

RECORD_FILE = "tuner_study.json"
SCHEMA = 1  # of the record's JSON; records without one (schema 0) have the same keys
OPTUNA_JOURNAL = "optuna_journal.log"


class TrialStatus(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"  # reached max_t, or the trainable finished on its own
    PRUNED = "pruned"  # stopped early by ASHA
    FAILED = "failed"  # errored more than max_failures times
    STOPPED = "stopped"  # cut short for good (the budget was spent)
    INTERRUPTED = "interrupted"  # cut short by Ctrl-C / SIGTERM; `tuner resume` continues it


class StudyState(str, Enum):
    RUNNING = "running"  # a driver has it (or had it, and was killed: `tuner resume`)
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM or an error; `tuner resume` continues it


@dataclass
class TrialEntry:
    """What happened to one trial."""

    trial_id: str
    status: TrialStatus = TrialStatus.RUNNING
    config: dict[str, Any] = field(default_factory=dict)
    iterations: int = 0
    metric: float | None = None  # the last value reported
    best_metric: float | None = None
    mlflow_run_id: str | None = None
    restarts: int = 0
    restarted_at: list[int] = field(default_factory=list)
    restarting: bool = False
    failures: int = 0
    preemptions: int = 0
    error: str | None = None
    cost_usd: float = 0.0
    wasted_usd: float = 0.0
    lost_iterations: int = 0
    market: str | None = None
    instance_type: str | None = None
    ended_at: float | None = None
    spent_usd: float | None = None  # the study's trial dollars when its last value came

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)  # from JSON: its value

    @property
    def final(self) -> bool:
        """Whether the trial is over for good (`tuner resume` does not run it again)."""
        return self.status not in (TrialStatus.RUNNING, TrialStatus.INTERRUPTED)


@dataclass
class StudyRecord:
    """Mutable, owned by the driver (one at a time: :class:`tuner.lock.StudyLock`); saved
    atomically, at once for a trial's start and end, at most every few seconds for
    results (``StudyBook.save``). ``to_dict``/``from_dict`` are its JSON form, versioned
    by ``schema``."""

    path: str  # the study's directory (not saved: where the file is)
    name: str
    metric: str
    mode: str
    num_samples: int
    mlflow_uri: str
    mlflow_experiment: str
    parent_run_id: str  # "" until the MLflow parent run exists
    settings: dict[str, Any]  # StudySettings' fields (`study_settings()` rebuilds them)
    max_t: int = 0
    space: dict[str, Any] = field(default_factory=dict)
    trainable: str | None = None  # "module:function", when importable by name
    base_dir: str = "."
    tune_path: str = ""  # Ray Tune's experiment (this directory, or s3://...)
    optuna_storage: str = ""
    created: float = field(default_factory=time.time)
    state: StudyState = StudyState.RUNNING
    resumes: int = 0
    trials: dict[str, TrialEntry] = field(default_factory=dict)
    stop_reason: str | None = None  # "budget" (spent), "metric" (a trial reported without it)
    cost: dict[str, float] = field(default_factory=dict)  # the meter's totals
    cost_to_best_usd: float | None = None  # as studies before TrialEntry.spent_usd wrote it
    budget_alerts: list[float] = field(default_factory=list)
    meter: dict[str, Any] = field(default_factory=dict)  # CostMeter.to_dict()
    idle_by_kind: dict[str, list[float]] = field(default_factory=dict)  # kind: [idle $, share]
    bill_since: float | None = None  # when its first driver started: the cluster bill's start
    price_note: str = ""
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        self.state = StudyState(self.state)  # from JSON: its value

    @classmethod
    def create(cls, path: str, **fields: Any) -> StudyRecord:
        record = cls(path=path, **fields)
        record.save()
        return record

    @classmethod
    def load(cls, path: str) -> StudyRecord:
        file = os.path.join(path, RECORD_FILE)
        if os.path.isfile(path):
            raise ConfigError(path, "", "is a file, not a study directory; pass the directory "
                              "a study was written to, e.g. tuner_results/<name>")
        if not os.path.exists(file):
            inside = sorted(entry.name for entry in _subdirectories(path)
                            if os.path.isfile(os.path.join(entry.path, RECORD_FILE)))
            if inside:
                shown_ = ", ".join(inside[:5]) + (f" and {len(inside) - 5} more"
                                                  if len(inside) > 5 else "")
                raise ConfigError(path, "", f"no study here, but {len(inside)} in it: {shown_}; "
                                  f"pass one, e.g. {os.path.join(path, inside[-1])}")
            rel = os.path.relpath(path)  # the path as given from the working directory
            home = os.path.join(os.path.expanduser("~"), rel)
            if not rel.startswith("..") and os.path.isfile(os.path.join(home, RECORD_FILE)):
                raise ConfigError(path, "", f"no study here, but there is one at {home} (a Ray "
                                  f"job's driver keeps relative paths under the home "
                                  f"directory); pass that")
            raise ConfigError(path, "", f"no study here (missing {RECORD_FILE}); pass the "
                              f"directory a study was written to, e.g. tuner_results/<name>")
        try:
            data = json.loads(read_text(file))
        except ValueError as exc:
            raise ConfigError(file, "", f"is not a study record ({exc}); {_FIX}") from None
        return cls.from_dict(path, data, file)

    @classmethod
    def from_dict(cls, path: str, data: Any, file: str = RECORD_FILE) -> StudyRecord:
        """The record in ``data`` (a record's JSON); one line naming the file and the key
        for anything a study did not write, or a schema this version cannot read."""
        _check(file, data)
        schema = data.get("schema", 0)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise ConfigError(file, "schema", f"is {schema!r}, newer than this tuner reads "
                              f"({SCHEMA}); upgrade spot-tuner to read this study")
        known = {f.name for f in fields(cls)} - {"path", "trials", "schema"}
        try:
            trials = {k: _trial(v) for k, v in data["trials"].items()}
            return cls(path=path, **{k: v for k, v in data.items() if k in known},
                       trials=trials)
        except (TypeError, ValueError) as exc:
            raise ConfigError(file, "", f"is not a whole study record ({exc}); {_FIX}") from None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        data["state"] = self.state.value
        data["trials"] = {k: {**asdict(t), "status": t.status.value}
                          for k, t in self.trials.items()}
        return data

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(os.path.join(path, RECORD_FILE))

    def save(self) -> None:
        write_json_atomic(os.path.join(self.path, RECORD_FILE), self.to_dict())

    def trial(self, trial_id: str) -> TrialEntry:
        """The trial's entry, made on first use."""
        return self.trials.setdefault(trial_id, TrialEntry(trial_id))

    def study_settings(self) -> StudySettings:
        """The study's settings, rebuilt (and checked) from the record."""
        from tuner.config import settings_from

        return settings_from(self.settings, os.path.join(self.path, RECORD_FILE))

    @property
    def budget_scope(self) -> str | None:
        """What ``budget_usd`` capped ("cluster" or "trials"), None without a budget."""
        if not self.settings.get("budget_usd"):
            return None
        return str(self.settings.get("budget_scope", "cluster"))

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in TrialStatus}
        for t in self.trials.values():
            out[t.status.value] += 1
        return out

    def improves(self, value: float, than: float | None) -> bool:
        """Whether ``value`` beats ``than`` (None: nothing yet) in the study's mode; a NaN or
        infinite value never does."""
        if not finite(value):
            return False
        if than is None or not finite(than):
            return True
        return value > than if self.mode == "max" else value < than

    def best(self) -> TrialEntry | None:
        """The best trial by final metric: among completed ones, else among the others that
        reported a finite value (NaN and infinities are never best), failed ones aside.

        A pruned trial's last value was measured at lower fidelity, so it wins only when
        no trial ran to the end. A failed trial's configuration made the trainable raise on
        every try (preemptions are not failures), so it is never best: a study whose every
        trial failed has no best.
        """
        sign = 1 if self.mode == "max" else -1
        reported = [t for t in self.trials.values()
                    if finite(t.metric) and t.status != TrialStatus.FAILED]
        done = [t for t in reported if t.status == TrialStatus.COMPLETED]
        pool = done or reported
        return max(pool, key=lambda t: sign * float(t.metric or 0)) if pool else None


def _trial(data: Any) -> TrialEntry:
    if not isinstance(data, dict):
        raise TypeError(f"a trial must be an object, got {data!r}")
    known = {f.name for f in fields(TrialEntry)}
    return TrialEntry(**{k: v for k, v in data.items() if k in known})


def finite(value: Any) -> bool:
    """Whether ``value`` is a real number, not NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# What `tuner report` and `tuner resume` read from every record, and its JSON type
_REQUIRED = {"name": str, "metric": str, "mode": str, "mlflow_uri": str,
             "parent_run_id": str, "trials": dict}


_FIX = "restore it from a backup, or run the study again with `tuner run`"


def _check(file: str, data: Any) -> None:
    """Refuse a record a study did not write: one line naming the file, the key, the fix."""
    fix = _FIX
    if not isinstance(data, dict):
        raise ConfigError(file, "", f"is not a study record (a JSON object); {fix}")
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise ConfigError(file, key, f"missing or not a {kind.__name__} (got "
                              f"{data.get(key)!r}); the file is not a whole study record; {fix}")
    for trial_id, entry in data["trials"].items():
        if not isinstance(entry, dict):
            raise ConfigError(file, f"trials.{trial_id}", f"must be an object, got "
                              f"{entry!r}; {fix}")


def _subdirectories(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir()]
    except OSError:  # missing, unreadable, not a directory
        return []
