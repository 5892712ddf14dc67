"""Budgets bind on the bill: on the local spot cluster, a study whose budget is smaller than
what its cluster costs while it runs stops with stop reason budget, the cluster's dollars
within one iteration's worth of the cap; the two headlines (trials, cluster) are printed
with their on-demand counterparts.

Real: the cluster process and its Ray nodes, the driver (`tuner run`), MLflow. Faked: EC2
(the nodes are local processes labelled as instance types, priced from the catalog).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import tuner
from tests.helpers import counting_trainable, start_cluster, stop_cluster, user_env

ITERATION_S = 1.5


def test_a_budget_smaller_than_the_cluster_bill_stops_the_study_at_the_cap(tmp_path):
    cluster, info = start_cluster(tmp_path)  # head + 2 spot + 1 on-demand worker, no hazard
    try:
        (tmp_path / "counting.py").write_text(counting_trainable(40, ITERATION_S))
        (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
            trainable: counting:train
            space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
            metric: acc
            num_samples: 6
            scheduler: {{max_t: 40, grace_period: 40}}
            name: capped
            budget_usd: 0.0015
            ray_address: {info["address"]!r}
        """))
        out = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "exp.yaml"],
                             cwd=tmp_path, env=user_env(), capture_output=True, text=True,
                             timeout=400)
    finally:
        leftover = stop_cluster(cluster, info)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = tuner.TuneResult.load(tmp_path / "tuner_results" / "capped")
    assert result.stop_reason == "budget" and result.budget_scope == "cluster"
    assert "budget spent (stop reason budget, on the cluster's dollars)" in out.stdout
    assert "Trials cost" in out.stdout and "Cluster bill" in out.stdout
    # the cap binds on the bill, not on the trials' share of it
    c = result.cost
    assert c["cost_usd"] < c["cluster_usd"]  # head and idle time are on the bill
    nodes = _meter(result.path)["nodes"].values()  # all up to the end (no hazard)
    one_iteration = sum(n["info"]["usd_per_hour"] for n in nodes) / 3600 * ITERATION_S
    assert abs(c["cluster_usd"] - 0.0015) <= one_iteration, (c, one_iteration)
    assert c["cluster_on_demand_usd"] > c["cluster_usd"]  # spot workers
    assert leftover == [], f"processes left behind: {leftover}"


def _meter(path: str) -> dict:
    import json
    import os

    with open(os.path.join(path, "tuner_study.json"), encoding="utf-8") as f:
        return json.load(f)["meter"]
