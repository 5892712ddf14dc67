"""Studies on the local spot cluster (`tuner cluster up --local`), as a user runs them.

Real: the cluster process and its Ray node processes (preempted nodes are SIGKILLed and
replaced), the drivers (`tuner run`, `ray job submit`), MLflow. Faked: EC2 -- each spot
node's metadata endpoint is a local HTTP server, and the spot market is a simulator
issuing notices at a hazard rate on a 60x clock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

from mlflow.tracking import MlflowClient

from tests.helpers import counting_trainable, start_cluster, stop_cluster, user_env

BIN = os.path.dirname(sys.executable)
TRAINABLE = counting_trainable(8, 0.4, checkpoint_every=3)


def test_a_study_under_frequent_preemptions_loses_no_trial(tmp_path):
    cluster, info = start_cluster(tmp_path, "--hazard", "8", "--seed", "3")
    try:
        (tmp_path / "spot_train.py").write_text(TRAINABLE)
        (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
            trainable: spot_train:train
            space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
            metric: acc
            num_samples: 6
            scheduler: {{max_t: 8, grace_period: 4, reduction_factor: 2}}
            max_failures: 2
            name: spotty
            ray_address: {info["address"]!r}
        """))
        out = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "exp.yaml"],
                             cwd=tmp_path, env=user_env(),
                             capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    finally:
        leftover = stop_cluster(cluster, info)
    log = (tmp_path / "cluster.log").read_text()
    assert log.count("[cluster] killed") >= 1, log  # the market did preempt nodes
    record = json.loads((tmp_path / "tuner_results" / "spotty" / "tuner_study.json").read_text())
    trials = record["trials"].values()
    assert len(trials) == 6
    assert {t["status"] for t in trials} <= {"completed", "pruned"}, \
        [(t["status"], t.get("error"), t.get("preemptions")) for t in trials]
    # Preemptions are not failures (tests/fault/test_preemption.py checks it exactly); here,
    # under churn, Ray may still count one: a reused actor handed a trial on a node that is
    # already draining dies mid-call ("Socket closed"), which Ray does not see as a
    # preemption. max_failures covers that race; most losses must still be preemptions.
    preemptions = sum(t.get("preemptions", 0) for t in trials)
    failures = sum(t.get("failures", 0) for t in trials)
    assert failures <= 1 and (preemptions == 0 or failures < preemptions), (preemptions, failures)
    client = MlflowClient(record["mlflow_uri"])
    runs = client.search_runs([client.get_run(record["parent_run_id"]).info.experiment_id],
                              "tags.`tuner.kind` = 'trial'")
    assert sorted(r.info.run_id for r in runs) == sorted(t["mlflow_run_id"] for t in trials)
    # trials ran on spot nodes (some may end on the on-demand one, as spot nodes churn)
    markets = {m for t in record["meter"]["trials"].values() for m in t["markets"]}
    assert "spot" in markets
    assert leftover == [], f"processes left behind: {leftover}"


def test_an_example_runs_unchanged_under_ray_job_submit(tmp_path):
    """`ray job submit --working-dir . -- python examples/digits_mlp.py`, as the README shows
    it. The job runs on the cluster it was submitted to, though another Ray instance runs on
    the machine (a second local cluster, of m5.xlarge nodes): Ray's job supervisor gives
    its driver the address named in its own cluster's temp dir, else any instance it finds.
    The study outlives the job's copy of its working dir (deleted with the cluster): its
    relative paths land in the home directory."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work, home = tmp_path / "checkout", tmp_path / "home"
    for folder in ("examples", "search_spaces"):
        shutil.copytree(os.path.join(root, folder), work / folder)
    home.mkdir()
    (tmp_path / "decoy").mkdir()
    decoy, decoy_info = start_cluster(tmp_path / "decoy", "--worker", "m5.xlarge:on-demand:1")
    cluster, info = start_cluster(tmp_path, "--dashboard", "--worker", "c5.xlarge:on-demand:2",
                                  env={"HOME": str(home)})
    try:
        for _ in range(30):  # the head's dashboard agent may still be starting
            out = subprocess.run(
                [os.path.join(BIN, "ray"), "job", "submit", "--address", info["dashboard"],
                 "--working-dir", ".", "--", sys.executable, "examples/digits_mlp.py",
                 "--num-samples", "3", "--max-epochs", "3", "--name", "job"],
                cwd=work, env={**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token"},
                capture_output=True, text=True, timeout=400)
            if "No available agent to submit job" not in out.stderr + out.stdout:
                break
            time.sleep(2)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "Best val_accuracy" in out.stdout
        assert f"relative paths are kept under {home}" in out.stdout
    finally:
        leftover = stop_cluster(cluster, info) + stop_cluster(decoy, decoy_info)
    record = json.loads((home / "tuner_results" / "job" / "tuner_study.json").read_text())
    assert len(record["trials"]) == 3
    assert {t["instance_type"] for t in record["trials"].values()} == {"c5.xlarge"}
    assert record["mlflow_uri"] == f"sqlite:///{home}/mlflow.db"
    assert len(MlflowClient(record["mlflow_uri"]).search_runs(
        [MlflowClient(record["mlflow_uri"]).get_experiment_by_name("job").experiment_id])) == 4
    assert leftover == []
    assert not os.path.exists(info["temp_dir"])  # its nodes' logs and the job's copy
