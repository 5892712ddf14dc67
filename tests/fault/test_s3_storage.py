"""Checkpoints and experiment state on S3: a driver killed mid-study resumes from there.

Real: moto's S3 server on 127.0.0.1 (a separate process speaking the S3 API), the local
cluster's Ray node processes (started with the S3 endpoint in their environment, as
instance profiles give real nodes credentials), the drivers, SIGKILL. Faked: AWS S3 itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import boto3

from tests.conftest import free_port, stop_process_group
from tests.helpers import counting_trainable, start_cluster, stop_cluster, user_env

TRAINABLE = counting_trainable(6, 0.6)


def test_a_study_on_s3_survives_its_driver(tmp_path, monkeypatch):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                             "-H", "127.0.0.1", "-p", str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for k, v in aws.items():
        monkeypatch.setenv(k, v)
    cluster = info = None
    try:
        _wait_for(endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="studies")
        cluster, info = start_cluster(tmp_path, "--worker", "c5.xlarge:on-demand:2")
        (tmp_path / "s3train.py").write_text(TRAINABLE)
        (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
            trainable: s3train:train
            space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
            metric: acc
            num_samples: 10
            scheduler: {{max_t: 6, grace_period: 2, reduction_factor: 2}}
            storage_path: s3://studies/runs
            name: s3study
            ray_address: {info["address"]!r}
        """))
        env = user_env()
        cli = [sys.executable, "-m", "tuner.cli"]
        driver = subprocess.Popen([*cli, "run", "exp.yaml"], cwd=tmp_path, env=env,
                                  start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        record_file = tmp_path / "tuner_results" / "s3study" / "tuner_study.json"
        _wait_for_snapshot_after_a_finished_trial(s3, record_file, driver)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        resumed = subprocess.run([*cli, "resume", str(record_file.parent)], cwd=tmp_path,
                                 env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="studies", Prefix="runs/s3study/") for o in page.get("Contents", [])]
    finally:
        if cluster is not None:
            assert stop_cluster(cluster, info) == []
        stop_process_group(moto)
    record = json.loads(record_file.read_text())
    assert record["state"] == "finished" and record["tune_path"] == "s3://studies/runs/s3study"
    assert len(record["trials"]) == 10
    failed = {k: t.get("error") for k, t in record["trials"].items() if t["status"] not in ("completed", "pruned")}
    assert not failed, f"{failed}\n{resumed.stdout[-3000:]}\n{resumed.stderr[-3000:]}"
    assert any("/checkpoint_" in k for k in keys)  # trials checkpointed to S3
    assert any(k.split("/")[-1].startswith("experiment_state") for k in keys)
    assert not (tmp_path / "tuner_results" / "s3study" / "tuner.pkl").exists()  # Tune's is on S3


def _wait_for(endpoint, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP answer: it is up
                return
            time.sleep(0.3)
    raise AssertionError("moto_server did not start")


def _wait_for_snapshot_after_a_finished_trial(s3, record_file, driver, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the driver ended before it could be killed"
        try:
            record = json.loads(record_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.3)
            continue
        ended = [t for t in record["trials"].values() if t["status"] != "running"]
        objects = s3.list_objects_v2(Bucket="studies", Prefix="runs/s3study/").get("Contents", [])
        states = [o for o in objects if o["Key"].split("/")[-1].startswith("experiment_state")]
        if 1 <= len(ended) < 9 and states:
            # Tune uploads its snapshots in the background, so an object's time says little
            # about its content: read it, and kill once it knows every trial the record does.
            latest = max(states, key=lambda o: o["LastModified"])
            state = s3.get_object(Bucket="studies", Key=latest["Key"])["Body"].read().decode()
            if all(trial_id in state for trial_id in record["trials"]):
                return
        time.sleep(0.3)
    raise AssertionError("no experiment snapshot on S3 holding a finished trial")
