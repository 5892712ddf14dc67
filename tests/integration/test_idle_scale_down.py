"""Idle scale-down on the local spot cluster (`tuner cluster up --local --idle-timeout`), as a
user runs it.

Real: the cluster process and its Ray node processes (an idle worker is drained through the
GCS and its processes stopped; a removed kind is started again as a new Ray node), Ray's
view of which node is idle and which trials wait, the driver (`tuner run`), the study's cost
meter and MLflow. Faked: EC2 (no instances: a "node kind" is a label on a local Ray node),
and the spot market (no preemptions here: hazard 0).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from tests.helpers import counting_trainable, start_cluster, stop_cluster, user_env

TIMEOUT_S = 3


def _wait_for(path, text, count, seconds):
    deadline = time.monotonic() + seconds
    while path.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {count} x {text!r}:\n{path.read_text()}"
        time.sleep(0.25)
    return time.monotonic()


def test_an_idle_worker_goes_and_comes_back_when_a_study_needs_it(tmp_path):
    cluster, info = start_cluster(tmp_path, "--worker", "c5.xlarge:spot:1",
                                  "--idle-timeout", str(TIMEOUT_S))
    log = tmp_path / "cluster.log"
    try:
        up = time.monotonic()
        assert "idle workers removed after 3 s" in log.read_text()
        assert "[cluster] removed" not in log.read_text()  # idle, but not yet for 3 s
        _wait_for(log, "[cluster] removed", 1, 120)
        # The only worker is gone: the study starts on a head with no CPU, and its first
        # trial waiting for one brings the kind back.
        (tmp_path / "idle_train.py").write_text(counting_trainable(4, 0.3))
        (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
            trainable: idle_train:train
            space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
            metric: acc
            num_samples: 3
            scheduler: {{max_t: 4, grace_period: 4, reduction_factor: 2}}
            name: idle
            ray_address: {info["address"]!r}
        """))
        out = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "exp.yaml", "--quiet"],
                             cwd=tmp_path, env=user_env(), capture_output=True, text=True,
                             timeout=400)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert log.read_text().count("[cluster] up") == 2  # started, then started again
        # idle again once the study is over: removed again
        _wait_for(log, "[cluster] removed", 2, 120)
    finally:
        leftover = stop_cluster(cluster, info)
    assert time.monotonic() - up >= TIMEOUT_S
    record = json.loads((tmp_path / "tuner_results" / "idle" / "tuner_study.json").read_text())
    assert {t["status"] for t in record["trials"].values()} == {"completed"}
    assert all(t.get("failures", 0) == 0 for t in record["trials"].values())
    # the trials ran on the re-added worker, priced as its kind; the meter saw its kind idle
    assert {t["instance_type"] for t in record["trials"].values()} == {"c5.xlarge"}
    assert "c5.xlarge spot" in record["idle_by_kind"]
    assert leftover == [], f"processes left behind: {leftover}"
