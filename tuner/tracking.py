"""MLflow, at the edge: one parent run per study, one nested run per trial.

The only module that imports ``mlflow``. It speaks to a tracking store through
``MlflowClient`` (no global active run), so the driver can keep many trial runs
open at once and reattach to them after a restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from tuner.errors import StudyError

PARENT_TAG = "mlflow.parentRunId"
_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED",
           "stopped": "KILLED", "running": "RUNNING"}


def default_uri() -> str:
    """A sqlite store in the working directory (mlflow 3 refuses a bare ./mlruns)."""
    return f"sqlite:///{os.path.abspath('mlflow.db')}"


def _probe(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server is unreachable."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        pass  # it answered: reachable (a proxy may not serve /health)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StudyError(f"MLflow tracking store {uri!r} is not usable (unreachable: {reason}); "
                         f"start the server or pass another mlflow_uri "
                         f"(e.g. sqlite:///mlflow.db)") from None


class Tracker:
    """Writes a study and its trials to an MLflow tracking store."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or default_uri()
        _probe(self.uri)
        self._client = MlflowClient(tracking_uri=self.uri)
        try:
            found = self._client.get_experiment_by_name(experiment)
            self.experiment_id = (found.experiment_id if found is not None
                                  else self._client.create_experiment(experiment))
        except Exception as exc:  # unreachable server, bad URI, locked file, ...
            raise StudyError(
                f"MLflow tracking store {self.uri!r} is not usable ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); start the server or pass another "
                f"mlflow_uri (e.g. sqlite:///mlflow.db)") from None

    def start_study(self, name: str, params: Mapping[str, Any], space: Mapping[str, Any]) -> str:
        run = self._client.create_run(self.experiment_id, run_name=name,
                                      tags={"tuner.kind": "study", "tuner.study": name})
        run_id = run.info.run_id
        self._log_params(run_id, params)
        self._client.log_dict(run_id, dict(space), "space.yaml")
        self._client.log_dict(run_id, {k: v if isinstance(v, (str, int, float, bool)) else str(v)
                                       for k, v in params.items()}, "config.yaml")
        return run_id

    def reopen_study(self, run_id: str) -> None:
        self._client.update_run(run_id, status="RUNNING")
        self._client.set_tag(run_id, "tuner.resumed", "true")

    def start_trial(self, parent_run_id: str, study: str, trial_id: str,
                    params: Mapping[str, Any]) -> str:
        run = self._client.create_run(
            self.experiment_id, run_name=trial_id,
            tags={PARENT_TAG: parent_run_id, "tuner.kind": "trial", "tuner.study": study,
                  "tuner.trial_id": trial_id})
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if batch:
            self._client.log_batch(run_id, metrics=batch)

    def end_run(self, run_id: str, status: str, tags: Mapping[str, Any] = {}) -> None:
        """Close a run; ``status`` is one of completed, pruned, failed, stopped, running."""
        self.set_tags(run_id, {"tuner.status": status, **tags})
        if status != "running":
            self._client.set_terminated(run_id, _STATUS[status])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self._client.set_tag(run_id, k, str(v))

    def log_artifact(self, run_id: str, path: str) -> None:
        self._client.log_artifact(run_id, path)

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):
            self._client.log_batch(run_id, params=batch[i:i + 100])
