"""Dollars per trial on a real local Ray cluster of labelled nodes.

Two worker nodes are added to the test session's cluster with the labels our cluster
configs give real instances (a spot c5.xlarge, an on-demand m5.large); what is faked
is only that they are processes on this machine, not EC2 instances. Trials ask for a
custom resource only those nodes have, so every trial runs on a labelled node. The
trainable measures its own seconds per iteration; the test prices them itself and
compares with what the study recorded and logged to MLflow.
"""

from __future__ import annotations

import json
import time

import pytest
import ray
from mlflow.tracking import MlflowClient

import tuner
from tuner.cost import CostMeter, PriceCatalog
from tuner.cost.catalog import COLUMNS
from tuner.record import StudyRecord

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "log": None}


def timed(config):
    """Sleeps 0.25 s per iteration; logs (node, seconds) as it measures them itself."""
    node = ray.get_runtime_context().get_node_id()
    last = time.monotonic()
    for i in range(1, 5):
        time.sleep(0.25 + 0.1 * config["x"])
        now = time.monotonic()
        with open(config["log"], "a") as f:
            f.write(json.dumps({"trial": ray.tune.get_context().get_trial_id(), "node": node,
                                "seconds": now - last}) + "\n")
        last = now
        tuner.report({"acc": config["x"] * i / 4})


def test_each_trial_costs_its_node_seconds_at_its_nodes_price(labelled_nodes, study_dir):
    launched, nodes = labelled_nodes
    log = study_dir / "iterations.jsonl"
    result = tuner.tune(timed, {**SPACE, "log": str(log)}, metric="acc", num_samples=6,
                        max_t=4, grace_period=4, resources_per_trial={"cpu": 1, "labelled": 1},
                        max_concurrent_trials=4, name="cost", verbose=False)
    ended = time.time()
    catalog = PriceCatalog.load()
    usd_per_s = {nid: catalog.get(kind, "us-east-1").hourly(
        tuner.cost.Market(market)) / 3600 for nid, (market, kind, _) in nodes.items()}

    measured: dict[str, float] = {}
    for line in log.read_text().splitlines():
        it = json.loads(line)
        measured[it["trial"]] = measured.get(it["trial"], 0.0) + \
            it["seconds"] * usd_per_s[it["node"]] / 2  # 1 of the node's 2 CPUs
    trials = result.trials.set_index("trial_id")
    for trial_id, usd in measured.items():
        assert trials.loc[trial_id, "cost_usd"] == pytest.approx(usd, rel=0.05)
    assert set(trials.market) == {"spot", "on-demand"}
    assert set(trials.instance_type) == {"c5.xlarge", "m5.large"}

    # The same figures in MLflow, to the cent (and far below it).
    client = MlflowClient(result.mlflow_uri)
    for _, row in trials.iterrows():
        run = client.get_run(row.mlflow_run_id)
        assert run.data.metrics["tuner.cost_usd"] == pytest.approx(row.cost_usd, abs=1e-9)
        assert run.data.tags["tuner.market"] == row.market
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["tuner.cost_usd"] == pytest.approx(trials.cost_usd.sum(), abs=1e-9)
    assert "pareto.png" in {a.path for a in client.list_artifacts(result.parent_run_id)}

    # useful + wasted + idle == what the two nodes cost while the study ran (from its start,
    # the nodes being older, until its driver ended, before now on the test's clock)
    record = json.loads((study_dir / "tuner_results" / "cost" / "tuner_study.json").read_text())
    meter = CostMeter.from_dict(record["meter"])
    down = {nid: record["meter"]["nodes"][nid]["down"] for nid in nodes}
    assert all(record["bill_since"] < end <= ended for end in down.values()), (down, ended)
    cluster_bill, idle = meter.node_bill(ended + 100, set(nodes))  # nothing after its end
    started = max(launched, record["bill_since"])
    assert cluster_bill == pytest.approx(
        sum((down[nid] - started) * usd_per_s[nid] for nid in nodes), rel=0.02)
    charged = sum(meter.charged_on(nid) for nid in nodes)
    assert charged + idle == pytest.approx(cluster_bill, rel=0.02)
    assert 0 < charged < cluster_bill


def test_a_budget_stops_the_study_within_one_iteration_of_the_cap(labelled_nodes, study_dir,
                                                                   capsys):
    prices = study_dir / "prices.csv"
    rows = [",".join(COLUMNS)]
    for kind, usd in (("c5.xlarge", 360.0), ("m5.large", 720.0)):  # $0.1 and $0.2 a second
        rows.append(f"{kind},us-east-1,2,0,8,{usd},{usd / 2},test,test,2026-11-26")
    prices.write_text("\n".join(rows) + "\n")
    result = tuner.tune(timed, {**SPACE, "log": str(study_dir / "it.jsonl")}, metric="acc",
                        num_samples=20, max_t=4, grace_period=4, prices=str(prices),
                        budget_usd=0.5, budget_scope="trials",  # the trials' dollars
                        resources_per_trial={"cpu": 1, "labelled": 1},
                        max_concurrent_trials=2, name="budget", verbose=True)
    spent = result.trials.cost_usd.sum()
    # The rule: stop once the dearest iteration seen could pass the cap: up to 0.2 * 0.35 / 2
    # (the dearest node, a 0.35 s iteration, half a node), more when the machine is loaded.
    _, one_iteration = CostMeter.from_dict(
        StudyRecord.load(result.path).meter).longest_and_dearest_iteration()
    assert one_iteration >= 0.1 * 0.25 / 2  # the cheaper node, the shortest sleep
    assert result.stop_reason == "budget"
    assert 0.5 - one_iteration <= spent <= 0.5 + one_iteration
    assert len(result.trials) < 20
    out = capsys.readouterr().out
    assert "budget alert: 50% of $0.5000 spent" in out and "budget alert: 80%" in out
    client = MlflowClient(result.mlflow_uri)
    assert client.get_run(result.parent_run_id).data.tags["tuner.stop_reason"] == "budget"
