"""Two studies on one cluster split its idle time, and their cluster figures add up to its bill.

Real: the test session's Ray cluster (a 2-CPU head), two `tuner run` drivers in their own
processes running at the same time, each trial holding 1 CPU, the studies telling each
other what they hold through the cluster's GCS key-value store. Nothing is faked but
the head being a process on this machine, priced as the default instance type.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import counting_trainable, user_env
from tuner import ray_compat
from tuner.study import CLUSTER_PREFIX


def test_two_studies_at_once_pay_shares_that_add_up_to_the_cluster_bill(ray_cluster, study_dir):
    (study_dir / "counting.py").write_text(counting_trainable(6, 0.4))
    drivers = []
    for name, samples in (("shared_a", 4), ("shared_b", 3)):
        (study_dir / f"{name}.yaml").write_text(textwrap.dedent(f"""
            trainable: counting:train
            space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
            metric: acc
            num_samples: {samples}
            max_concurrent_trials: 1
            scheduler: {{max_t: 6, grace_period: 6}}
            ray_address: {ray_cluster.address!r}
            name: {name}
        """))
        drivers.append(subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", "run", f"{name}.yaml", "--quiet"], cwd=study_dir,
            env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(4)  # B starts while A runs (and ends before or after it)
    for driver in drivers:
        out, err = driver.communicate(timeout=300)
        assert driver.returncode == 0, out[-2000:] + err[-2000:]

    said = {key.split("/")[-1].rsplit("-", 1)[0]: json.loads(value)
            for key, value in ray_compat.cluster_kv_items(CLUSTER_PREFIX).items()
            if key.startswith((f"{CLUSTER_PREFIX}shared_a-", f"{CLUSTER_PREFIX}shared_b-"))}
    assert set(said) == {"shared_a", "shared_b"} and all(s["ended"] for s in said.values())
    records = [json.loads((study_dir / "tuner_results" / name / "tuner_study.json").read_text())
               for name in ("shared_a", "shared_b")]
    assert [r["cost"]["shared_with_studies"] for r in records] == [1.0, 1.0]

    # The cluster's bill from the first study's start to the last one's end: every node
    # from when a study first saw it to when the last one watching it saw it go (a study's
    # own "down" is its end when the node outlived it), at its price.
    until = max(s["until"] for s in said.values())
    nodes: dict[str, tuple[float, float, float | None]] = {}
    for record in records:
        for node_id, node in record["meter"]["nodes"].items():
            up, _, down = nodes.get(node_id, (node["up"], 0.0, node["down"]))
            down = None if down is None or node["down"] is None else max(down, node["down"])
            nodes[node_id] = (min(up, node["up"]), node["info"]["usd_per_hour"], down)
    bill = sum((min(down or until, until) - up) * usd_per_hour / 3600
               for up, usd_per_hour, down in nodes.values())
    shares = [r["cost"]["cluster_usd"] for r in records]
    assert sum(shares) == pytest.approx(bill, rel=0.02), (bill, shares)
    for record, share in zip(records, shares, strict=True):
        cost = record["cost"]
        assert cost["cost_usd"] < share < bill  # its trials, some idle, not the whole bill
        assert cost["useful_usd"] + cost["wasted_usd"] + cost["idle_usd"] == pytest.approx(share, rel=0.02)
