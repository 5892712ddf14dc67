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
from enum import Enum
from typing import TYPE_CHECKING, Any

from tuner._files import read_text, write_json_atomic
from tuner.errors import ConfigError, StudyError

if TYPE_CHECKING:
    from tuner.config import StudySettings

RECORD_FILE = "tuner_study.json"
OPTUNA_JOURNAL = "optuna_journal.log"


class TrialStatus(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"  # reached max_t, or the trainable finished on its own
    PRUNED = "pruned"  # stopped early by ASHA
    FAILED = "failed"  # errored more than max_failures times
    STOPPED = "stopped"  # cut short for good (the budget was spent)
    INTERRUPTED = "interrupted"  # cut short by Ctrl-C / SIGTERM; `tuner resume` continues it


class StudyRecord:
    """Mutable, owned by the driver (one at a time: :class:`tuner.lock.StudyLock`); saved
    atomically, at once for a trial's start and end, at most every few seconds for
    results (``StudyBook.save``)."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path  # the experiment directory
        self.data = data

    @classmethod
    def create(cls, path: str, **fields: Any) -> StudyRecord:
        data = {"created": time.time(), "state": "running", "trials": {}, **fields}
        record = cls(path, data)
        record.save()
        return record

    @classmethod
    def load(cls, path: str) -> StudyRecord:
        file = os.path.join(path, RECORD_FILE)
        if os.path.isfile(path):
            raise ConfigError(path, "", "is a file, not a study directory; pass the directory "
                              "a study was written to, e.g. tuner_results/<name>")
        if not os.path.exists(file):
            raise StudyError(f"{path}: no study here (missing {RECORD_FILE}); pass the "
                             f"directory a study was written to, e.g. tuner_results/<name>")
        try:
            data = json.loads(read_text(file))
        except ValueError as exc:
            raise ConfigError(file, "", f"is not a study record ({exc}); restore it from a "
                              f"backup, or run the study again with `tuner run`") from None
        _check(file, data)
        return cls(path, data)

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(os.path.join(path, RECORD_FILE))

    def save(self) -> None:
        write_json_atomic(os.path.join(self.path, RECORD_FILE), self.data)

    @property
    def trials(self) -> dict[str, dict[str, Any]]:
        return self.data["trials"]

    def trial(self, trial_id: str) -> dict[str, Any]:
        return self.trials.setdefault(trial_id, {
            "trial_id": trial_id, "status": TrialStatus.RUNNING.value, "iterations": 0,
            "metric": None, "best_metric": None, "config": {}, "mlflow_run_id": None,
            "restarts": 0, "restarted_at": [], "error": None})

    def settings(self) -> StudySettings:
        """The study's settings, rebuilt (and checked) from the record."""
        from tuner.config import settings_from

        return settings_from(self.data["settings"], os.path.join(self.path, RECORD_FILE))

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in TrialStatus}
        for t in self.trials.values():
            out[t["status"]] += 1
        return out

    def improves(self, value: float, than: float | None) -> bool:
        """Whether ``value`` beats ``than`` (None: nothing yet) in the study's mode; a NaN or
        infinite value never does."""
        if not finite(value):
            return False
        if than is None or not finite(than):
            return True
        return value > than if self.data["mode"] == "max" else value < than

    def best(self) -> dict[str, Any] | None:
        """The best trial by final metric: among completed ones, else among all that reported
        a finite value (NaN and infinities are never best).

        A pruned trial's last value was measured at lower fidelity, so it wins only when
        no trial ran to the end.
        """
        sign = 1 if self.data["mode"] == "max" else -1
        reported = [t for t in self.trials.values() if finite(t.get("metric"))]
        done = [t for t in reported if t.get("status") == TrialStatus.COMPLETED.value]
        pool = done or reported
        return max(pool, key=lambda t: sign * t["metric"]) if pool else None


def finite(value: Any) -> bool:
    """Whether ``value`` is a real number, not NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# What `tuner report` and `tuner resume` read from every record, and its JSON type
_REQUIRED = {"name": str, "metric": str, "mode": str, "mlflow_uri": str,
             "parent_run_id": str, "trials": dict}


def _check(file: str, data: Any) -> None:
    """Refuse a record a study did not write: one line naming the file, the key, the fix."""
    fix = "restore it from a backup, or run the study again with `tuner run`"
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
