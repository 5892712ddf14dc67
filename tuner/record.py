"""The study record: one JSON file per study that says what happened to every trial.

It lives beside Ray Tune's experiment state (``<storage_path>/<name>/tuner_study.json``),
is rewritten atomically, and is what ``tuner report`` and ``tuner resume`` read:
the MLflow run of the study and of each trial, each trial's status and metric.
"""

from __future__ import annotations

import json
import os
import time
from enum import Enum
from typing import Any

from tuner._files import write_json_atomic
from tuner.errors import StudyError

RECORD_FILE = "tuner_study.json"
OPTUNA_JOURNAL = "optuna_journal.log"


class TrialStatus(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"  # reached max_t, or the trainable finished on its own
    PRUNED = "pruned"  # stopped early by ASHA
    FAILED = "failed"  # errored more than max_failures times
    STOPPED = "stopped"  # cut short by the study ending (e.g. interrupted)


class StudyRecord:
    """Mutable, owned by the driver; every change is saved before it is acted on."""

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
        try:
            with open(file, encoding="utf-8") as f:
                return cls(path, json.load(f))
        except FileNotFoundError:
            raise StudyError(f"{path}: no study here (missing {RECORD_FILE}); pass the "
                             f"directory a study was written to, e.g. tuner_results/<name>") from None

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

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in TrialStatus}
        for t in self.trials.values():
            out[t["status"]] += 1
        return out

    def improves(self, value: float, than: float | None) -> bool:
        """Whether ``value`` beats ``than`` (None: nothing yet) in the study's mode."""
        if than is None:
            return True
        return value > than if self.data["mode"] == "max" else value < than

    def best(self) -> dict[str, Any] | None:
        """The best trial by final metric: among completed ones, else among all that reported.

        A pruned trial's last value was measured at lower fidelity, so it wins only when
        no trial ran to the end.
        """
        sign = 1 if self.data["mode"] == "max" else -1
        reported = [t for t in self.trials.values() if t["metric"] is not None]
        done = [t for t in reported if t["status"] == TrialStatus.COMPLETED.value]
        pool = done or reported
        return max(pool, key=lambda t: sign * t["metric"]) if pool else None
