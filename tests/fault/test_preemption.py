"""A spot interruption notice on the node running a trial, then the node is killed.

Real: the Ray cluster and its worker node processes (killed with SIGKILL, or shut down by
the local spot cluster), Ray's drain API, the driver process, Tune's retry, MLflow. Faked:
the EC2 instance metadata endpoint, played by a local HTTP server per node (IMDSv2 token,
then spot/instance-action), and, in the local spot cluster, the market's notice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import free_port
from tests.helpers import start_cluster, stop_cluster, user_env
from tuner.cost.nodes import labels_for
from tuner.spot.imds import FakeMetadataServer, InstanceMetadata
from tuner.spot.watcher import PreemptionWatcher, gcs_drain

TRAINABLE = '''
import json, os, time
import ray
import tuner

def train(config):
    state = tuner.load_state() or {"it": 0}
    node = ray.get_runtime_context().get_node_id()
    with open(config["log"], "a") as f:
        f.write(json.dumps({"start": state["it"], "node": node}) + "\\n")
    while state["it"] < 14:
        time.sleep(0.5)
        state["it"] += 1
        with open(config["log"], "a") as f:
            f.write(json.dumps({"it": state["it"], "node": node}) + "\\n")
        tuner.report({"acc": state["it"] / 14}, state=state, checkpoint_every=5)
'''


@pytest.fixture
def spot_nodes(ray_cluster):
    nodes = {}
    for zone in ("us-east-1a", "us-east-1b"):
        node = ray_cluster.add_node(num_cpus=1, resources={"spot": 1},
                                    dashboard_agent_listen_port=free_port(),
                                    labels=labels_for("spot", "c5.xlarge", "us-east-1", zone))
        nodes[node.node_id] = node
    ray_cluster.wait_for_nodes()
    yield nodes
    for node in nodes.values():
        if node.node_id in {n.node_id for n in ray_cluster.worker_nodes}:
            ray_cluster.remove_node(node, allow_graceful=False)


def run_driver(tmp_path, address, log, max_failures, resources="{cpu: 1, spot: 1}"):
    (tmp_path / "spottrain.py").write_text(TRAINABLE)
    (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
        trainable: spottrain:train
        space: {{x: {{type: float, low: 0, high: 1}}, log: {str(log)!r}}}
        metric: acc
        num_samples: 1
        scheduler: {{max_t: 14, grace_period: 14}}
        max_failures: {max_failures}
        resources_per_trial: {resources}
        name: preempt
        ray_address: {address!r}
    """))
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", "run", "exp.yaml"],
                            cwd=tmp_path, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_iteration(log, driver, at_least, timeout=120):
    deadline = time.monotonic() + timeout
    while not [e for e in read(log) if e.get("it", 0) >= at_least]:
        assert time.monotonic() < deadline and driver.poll() is None, driver.stdout.read()
        time.sleep(0.1)
    return read(log)[0]["node"]


def read(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_notice_drains_checkpoints_and_the_trial_loses_at_most_one_iteration(
        ray_cluster, spot_nodes, tmp_path):
    log = tmp_path / "trial.jsonl"
    driver = run_driver(tmp_path, ray_cluster.address, log, max_failures=0)  # preemption is no failure
    try:
        victim = wait_for_iteration(log, driver, 2)

        imds = FakeMetadataServer()
        watcher = PreemptionWatcher(victim, InstanceMetadata(imds.endpoint),
                                    gcs_drain(ray_cluster.address), margin_s=1.0)
        assert not watcher.poll()  # no notice yet: nothing happens
        goes_at = time.time() + 3.0
        imds.issue(at=goes_at)
        assert watcher.poll() and watcher.drained.time == pytest.approx(goes_at, abs=1)
        time.sleep(max(0.0, goes_at - time.time()))
        lost_at = max(e["it"] for e in read(log) if "it" in e and e["node"] == victim)
        ray_cluster.remove_node(spot_nodes[victim], allow_graceful=False)  # AWS takes it
        imds.close()
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out

    entries = read(log)
    restart = [e for e in entries if "start" in e][1]
    assert restart["node"] != victim
    assert restart["start"] >= lost_at - 1  # at most one iteration lost
    record = json.loads((tmp_path / "tuner_results" / "preempt" / "tuner_study.json").read_text())
    (trial,) = record["trials"].values()
    assert trial["status"] == "completed" and trial["iterations"] == 14
    assert trial["preemptions"] == 1 and trial.get("failures", 0) == 0
    assert trial["restarted_at"] == [restart["start"]]
    run = MlflowClient(record["mlflow_uri"]).get_run(trial["mlflow_run_id"])
    assert run.data.metrics["tuner.preemptions"] == 1
    assert run.data.tags["tuner.preempted"] == "true" and run.data.tags["tuner.status"] == "completed"
    assert "preempted" in out


def test_a_node_lost_without_notice_costs_the_rerun_iterations_as_waste(
        ray_cluster, spot_nodes, tmp_path):
    log = tmp_path / "trial.jsonl"
    driver = run_driver(tmp_path, ray_cluster.address, log, max_failures=1)
    try:
        victim = wait_for_iteration(log, driver, 7)  # checkpointed at 5, lost 6 and 7 (+ part of 8)
        ray_cluster.remove_node(spot_nodes[victim], allow_graceful=False)
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out
    entries = read(log)
    lost_at = max(e["it"] for e in entries if "it" in e and e["node"] == victim)
    restart = [e for e in entries if "start" in e][1]
    assert restart["start"] == 5 and lost_at >= 7  # resumed from the last checkpoint
    record = json.loads((tmp_path / "tuner_results" / "preempt" / "tuner_study.json").read_text())
    (trial,) = record["trials"].values()
    assert trial["status"] == "completed" and trial["failures"] == 1
    assert trial.get("preemptions", 0) == 0
    charged = record["meter"]["trials"][trial["trial_id"]]
    # the iterations after the checkpoint ran twice: their first run is the waste
    rerun = range(6, lost_at + 1)
    assert trial["wasted_usd"] > 0
    assert trial["wasted_usd"] == pytest.approx(
        trial["cost_usd"] - sum(charged["iterations"][str(i)] for i in range(1, 15)))
    per_iteration = trial["cost_usd"] / (14 + len(rerun))
    assert trial["wasted_usd"] == pytest.approx(len(rerun) * per_iteration, rel=0.5)


SPOT_CLUSTER = '''
import sys, threading
from pathlib import Path
from tuner._files import write_json_atomic
from tuner.spot.local import LocalSpotCluster, WorkerType

address_file, interrupt = sys.argv[2], Path(sys.argv[3])  # --address-file F, then ours
cluster = LocalSpotCluster((WorkerType("c5.xlarge", "spot", 1),)).start()  # no hazard
tick = cluster.tick


def tick_and_interrupt():
    if interrupt.exists():  # the test names the node AWS reclaims
        cluster.market.interrupt(interrupt.read_text())
        interrupt.unlink()
    tick()  # notice, drain, shutdown at the notice's end, replacement


cluster.tick = tick_and_interrupt
stop = threading.Event()
write_json_atomic(address_file, {"address": cluster.address, "temp_dir": cluster.temp_dir})
try:
    cluster.run(stop, lambda event, node: None)  # as `tuner cluster up --local`: SIGTERM stops it
finally:
    cluster.stop()
'''


def test_a_node_the_local_spot_market_reclaims_is_a_preemption_with_no_traceback(tmp_path):
    """The path of `make demo`: the local spot cluster's market gives the node running the
    trial a notice (2 minutes at 60x: 2 s), its watcher drains it, and at the notice's end
    the node is shut down and replaced. Faked: the market's choice of node (forced here,
    random in the demo) and EC2's metadata endpoint; everything else is real."""
    (tmp_path / "spot_cluster.py").write_text(SPOT_CLUSTER)
    interrupt = tmp_path / "interrupt"
    cluster, info = start_cluster(tmp_path, str(interrupt),
                                  program=[sys.executable, str(tmp_path / "spot_cluster.py")])
    log, driver = tmp_path / "trial.jsonl", None
    try:
        driver = run_driver(tmp_path, info["address"], log, max_failures=0,
                            resources="{cpu: 1}")  # the head has no CPU: on the spot node
        victim = wait_for_iteration(log, driver, 2)
        interrupt.write_text(victim)
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        leftover = stop_cluster(cluster, info)
    assert cluster.returncode != -signal.SIGKILL, "the cluster outlived SIGTERM by 60 s"
    assert driver.returncode == 0, out
    restart = [e for e in read(log) if "start" in e][1]
    assert restart["node"] != victim  # resumed on the replacement
    record = json.loads((tmp_path / "tuner_results" / "preempt" / "tuner_study.json").read_text())
    (trial,) = record["trials"].values()
    assert trial["status"] == "completed" and trial["iterations"] == 14
    assert trial["preemptions"] == 1 and trial.get("failures", 0) == 0 and not trial.get("error")
    assert "preempted; resuming from its last checkpoint" in out
    # an expected, handled event: no Tune error line, no traceback, no raylet post-mortem
    for scary in ("Trial task failed", "Traceback", "Raylet is terminated"):
        assert scary not in out, out
    assert leftover == []
