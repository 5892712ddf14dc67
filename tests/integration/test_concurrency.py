"""A study fills the cluster at once, not one actor start at a time.

Real: the test session's Ray cluster plus two labelled worker nodes (2 trial slots each,
a custom resource only they have), Ray Tune with OptunaSearch and actor reuse. Nothing
is faked but the nodes being processes on one machine.
"""

from __future__ import annotations

import json
import os
import time

import ray

import tuner


def short(config):
    """One iteration of 2 s; logs the node and process it ran in."""
    time.sleep(2)
    with open(config["log"], "a") as f:
        f.write(json.dumps({"node": ray.get_runtime_context().get_node_id(),
                            "pid": os.getpid()}) + "\n")
    tuner.report({"acc": config["x"]})


def test_trials_start_on_every_free_slot_without_max_concurrent_trials(labelled_nodes,
                                                                       study_dir):
    # Tune's default for a searcher lets one trial wait for resources at a time; trials
    # shorter than an actor start then all reuse the first actor, on one node.
    log = study_dir / "ran.jsonl"
    _, nodes = labelled_nodes
    tuner.tune(short, {"x": {"type": "float", "low": 0.0, "high": 1.0}, "log": str(log)},
               metric="acc", num_samples=8, max_t=1, grace_period=1,
               resources_per_trial={"cpu": 1, "labelled": 1}, name="wide", verbose=False)
    ran = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(ran) == 8
    assert {r["node"] for r in ran} == set(nodes)
    assert len({r["pid"] for r in ran}) == 4  # one actor per slot, reused after

