"""What a study found: :class:`TuneResult`, read back from its record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tuner import lock
from tuner.record import StudyRecord, StudyState, TrialStatus

TRIAL_COLUMNS = ["trial_id", "status", "iterations", "metric", "best_metric", "cost_usd",
                 "wasted_usd", "lost_iterations", "market", "instance_type", "preemptions",
                 "restarts", "restarted_at", "mlflow_run_id", "config", "error"]


@dataclass(frozen=True)
class TuneResult:
    """What a study found, read back from its record."""

    path: str
    name: str
    metric: str
    mode: str
    best_trial_id: str | None
    best_config: dict[str, Any] | None
    best_metric: float | None
    mlflow_uri: str
    parent_run_id: str
    trials: pd.DataFrame  # one row per trial: TRIAL_COLUMNS, the metric named as the study's,
    #                       then config/<parameter> for each parameter of the space
    cost: dict[str, float]  # cost_usd, wasted_usd, useful_usd, idle_usd, cluster_usd, ...
    cost_to_best_usd: float | None = None  # trial dollars spent when the best value came
    stop_reason: str | None = None
    state: str = "finished"  # or "running" (a driver has it), "interrupted" (resume it)
    budget_scope: str | None = None  # what budget_usd capped: "cluster" or "trials"
    idle_by_kind: dict[str, tuple[float, float]] = field(default_factory=dict)
    trainable: str | None = None  # "module:function", or None: resume needs trainable=
    space: dict[str, Any] = field(default_factory=dict)  # as written (SearchSpace.to_dict)
    num_samples: int = 0  # the trials the study runs in all (some may not have started)

    @classmethod
    def load(cls, path: str) -> TuneResult:
        """Read the result of the study written to ``path`` (finished or not). A study
        on record as running whose driver is gone (killed: no one holds its lock) reads as
        interrupted, its running trials too: what `tuner resume` continues."""
        record = StudyRecord.load(os.path.abspath(path))
        if record.state is StudyState.RUNNING and not lock.held(record.path):
            record.state = StudyState.INTERRUPTED
            for trial in record.trials.values():
                if trial.status is TrialStatus.RUNNING:
                    trial.status = TrialStatus.INTERRUPTED
        return cls.from_record(record)

    @classmethod
    def from_record(cls, record: StudyRecord) -> TuneResult:
        rows = [{c: getattr(t, c) for c in TRIAL_COLUMNS} for t in record.trials.values()]
        for row in rows:
            row["status"] = row["status"].value
        frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS).rename(
            columns={"metric": record.metric, "best_metric": f"best_{record.metric}"})
        for name in record.space:  # one column per parameter, named as Ray Tune's frames do
            frame[f"config/{name}"] = frame["config"].map(lambda c, n=name: c.get(n))
        best = record.best()
        return cls(
            path=record.path, name=record.name, metric=record.metric, mode=record.mode,
            best_trial_id=best.trial_id if best else None,
            best_config=dict(best.config) if best else None,
            best_metric=best.metric if best else None, mlflow_uri=record.mlflow_uri,
            parent_run_id=record.parent_run_id, trials=frame, cost=dict(record.cost),
            cost_to_best_usd=(best.spent_usd if best and best.spent_usd is not None
                              else record.cost_to_best_usd),
            stop_reason=record.stop_reason,
            state=record.state.value, budget_scope=record.budget_scope,
            idle_by_kind={k: (v[0], v[1]) for k, v in record.idle_by_kind.items()},
            trainable=record.trainable, space=dict(record.space),
            num_samples=record.num_samples)

    def table(self) -> str:
        """The per-trial table, the Pareto set, the cost and how the study ended."""
        from tuner.summary import format_table

        return format_table(self)

    def why_no_best(self) -> str | None:
        """Why no trial has a usable value of the metric (one line), or None if one has."""
        from tuner.summary import no_usable_metric

        return no_usable_metric(self)
