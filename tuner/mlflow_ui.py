"""Where a study shows in MLflow's UI: its address, the runs table, and the chart view of the
trials' metric against their dollars -- strings and the UI's own view state, no store.

MLflow 3.17's UI opens an experiment on its GenAI overview unless the URL says
``workflowType=machine_learning``; its compare page cannot be told its scatter's axes, but
a shared view (an experiment tag ``mlflow.sharedViewState.<key>``, as its Share button saves)
can, and ``viewStateShareKey=<key>`` opens it.
"""

from __future__ import annotations

import json
import time
import urllib.parse

UI_ADDRESS = "http://127.0.0.1:5000"  # where `make ui` serves a local store
VIEW_TAG = "mlflow.sharedViewState."  # experiment tag + key: a view the UI's Share button saves
PARENT_TAG = "mlflow.parentRunId"


def ui_address(uri: str) -> str:
    """Where the MLflow UI of the store ``uri`` is: the tracking server itself (without
    credentials), else the address `make ui` serves it on."""
    if not uri.startswith(("http://", "https://")):
        return UI_ADDRESS
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2],
                                                  query="", fragment="")).rstrip("/")


def runs_url(uri: str, experiment_id: str) -> str:
    """The experiment's runs table (the UI would otherwise open on its GenAI overview)."""
    return f"{ui_address(uri)}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def cost_view_url(uri: str, experiment_id: str, parent_run_id: str) -> str:
    """The experiment's chart view on the study's trials: the scatter of the metric against
    ``tuner.cost_usd`` that :meth:`Tracker.share_cost_view` saved."""
    return (runs_url(uri, experiment_id) + "&compareRunsMode=CHART&viewStateShareKey="
            + view_key(parent_run_id))


def view_key(parent_run_id: str) -> str:
    return f"tuner-cost-{parent_run_id}"


def cost_view_state(parent_run_id: str, study: str, metric: str, mode: str, trials: int) -> str:
    """The UI state (MLflow 3.17's runs page, as its Share button saves it) that shows a
    study's trial runs, best first, and one chart: ``metric`` against ``tuner.cost_usd``.

    The UI's own format, not a documented API: the browser check (``make ui-test``) proves it
    against the pinned MLflow. A view the UI cannot read shows an error banner and the
    plain runs page.
    """
    section, chart = f"tuner-{parent_run_id[:8]}-section", f"tuner-{parent_run_id[:8]}-scatter"
    columns = [f"metrics.`{metric}`", "metrics.`tuner.cost_usd`", "tags.`tuner.status`",
               "tags.`tuner.market`", "tags.`tuner.instance_type`", "metrics.`tuner.wasted_usd`"]
    state = {
        "searchFilter": f"tags.`{PARENT_TAG}` = '{parent_run_id}'",  # the trials, flat:
        "orderByKey": f"metrics.`{metric}`", "orderByAsc": mode == "min",  # sorted, not nested
        "startTime": "ALL", "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL", "hideEmptyCharts": True,
        "compareRunSections": [{"uuid": section, "name": f"Cost against {metric}",
                                "display": True, "isReordered": False, "deleted": False,
                                "isGenerated": False, "columns": 1, "cardHeight": 520}],
        "compareRunCharts": [{"uuid": chart, "type": "SCATTER", "metricSectionId": section,
                              "deleted": False, "isGenerated": False,
                              "displayName": f"{metric} against trial cost (USD), {study}",
                              "runsCountToCompare": max(100, trials),
                              "xaxis": {"key": "tuner.cost_usd", "type": "METRIC"},
                              "yaxis": {"key": metric, "type": "METRIC"}}],
    }
    now = int(time.time() * 1000)
    return json.dumps({"name": f"{study}: {metric} against cost", "createdAt": now,
                       "updatedAt": now, "state": json.dumps(state)})
