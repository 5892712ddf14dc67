"""Idle scale-down of the local spot cluster: the pure logic (``IdleScaler``) on a clock passed
in, no sleeps and no Ray; the reading of Ray's cluster status from hand-built status objects
of Ray's own classes; the ``--idle-timeout`` flag's checks with the cluster faked (starting
one fails the test). tests/integration/test_idle_scale_down.py runs it on a real cluster."""

from __future__ import annotations

import pytest
from ray.autoscaler.v2.schema import (
    ClusterStatus,
    NodeInfo,
    NodeUsage,
    PlacementGroupResourceDemand,
    RayTaskActorDemand,
    ResourceDemandSummary,
    ResourceRequestByCount,
    ResourceUsage,
)

from tests.unit.test_cli import main, one_line_error
from tuner import ray_compat
from tuner.spot.idle import IdleScaler, NodeView
from tuner.spot.local import WorkerType

C5 = WorkerType("c5.xlarge", "spot", 1, "us-east-1a")
M5 = WorkerType("m5.xlarge", "spot", 2, "us-east-1b")
OD = WorkerType("c5.xlarge", "on-demand", 1, "us-east-1a")
FLEET = (C5, M5, OD)


def idle(seconds, cpus=1.0):
    return NodeView(seconds, {"CPU": cpus})


def busy():
    return NodeView(None, {"CPU": 0.0})


def test_a_worker_idle_for_the_timeout_is_removed_and_not_before():
    scaler = IdleScaler(10, FLEET)
    workers = {"a": C5, "b": OD}
    assert scaler.step(100, workers, {"a": idle(0), "b": busy()}).remove == []
    assert scaler.step(109.9, workers, {"a": idle(9.9), "b": busy()}).remove == []
    assert scaler.step(110, workers, {"a": idle(10), "b": busy()}).remove == ["a"]


def test_ray_s_idle_clock_counts_from_before_the_first_look():
    """A node Ray has seen idle for 30 s is idle for 30 s, even at the scaler's first look."""
    scaler = IdleScaler(10, FLEET)
    assert scaler.step(50, {"a": C5}, {"a": idle(30)}).remove == ["a"]
    assert scaler.idle_since("a") == 20


def test_work_resets_the_idle_clock():
    scaler = IdleScaler(10, FLEET)
    scaler.step(0, {"a": C5}, {"a": idle(0)})
    scaler.step(8, {"a": C5}, {"a": busy()})
    assert scaler.idle_since("a") is None
    # Ray's report may lag and still say "idle for 9 s": never earlier than we saw it busy
    assert scaler.step(9, {"a": C5}, {"a": idle(9)}).remove == []
    assert scaler.idle_since("a") == 8
    assert scaler.step(18, {"a": C5}, {"a": idle(18)}).remove == ["a"]


def test_a_busy_spell_between_two_looks_restarts_the_clock():
    """Ray's idle clock restarted (a short trial ran between two ticks): so does ours."""
    scaler = IdleScaler(10, FLEET)
    scaler.step(0, {"a": C5}, {"a": idle(0)})
    assert scaler.step(12, {"a": C5}, {"a": idle(3)}).remove == []
    assert scaler.idle_since("a") == 9


def test_a_refused_drain_counts_as_work():
    scaler = IdleScaler(5, FLEET)
    assert scaler.step(10, {"a": C5}, {"a": idle(10)}).remove == ["a"]
    scaler.busy("a", 10)  # the raylet refused the idle drain: a trial landed meanwhile
    assert scaler.step(11, {"a": C5}, {"a": idle(11)}).remove == []
    assert scaler.step(15, {"a": C5}, {"a": idle(15)}).remove == ["a"]


def test_a_starting_worker_and_one_under_a_spot_notice_are_kept():
    scaler = IdleScaler(5, FLEET)
    workers = {"new": C5, "noticed": M5}
    events = scaler.step(100, workers, {"noticed": idle(60, 2)}, keep={"noticed"})
    assert events.remove == []  # "new" is not in the status yet; "noticed" goes anyway


def test_a_removed_worker_is_forgotten():
    scaler = IdleScaler(5, FLEET)
    scaler.step(10, {"a": C5}, {"a": idle(10)})
    scaler.step(11, {}, {})
    assert scaler.idle_since("a") is None


def test_waiting_demand_the_live_nodes_cannot_hold_starts_a_missing_kind():
    scaler = IdleScaler(5, FLEET)
    # c5 spot is up and busy; m5 spot and the on-demand c5 were removed
    events = scaler.step(0, {"a": C5}, {"a": busy(), "head": NodeView(None, {"CPU": 0.0})},
                         demand=[{"CPU": 1.0}])
    assert events.add == [M5]  # the first missing kind in fleet order


def test_demand_that_fits_free_room_starts_nothing():
    """A trial waits for a node that is up but not yet taken (e.g. just started)."""
    scaler = IdleScaler(5, FLEET)
    assert scaler.step(0, {"a": C5}, {"a": idle(0)}, demand=[{"CPU": 1.0}]).add == []


def test_bundles_pack_onto_a_kind_already_chosen_and_the_fleet_caps_each_kind():
    scaler = IdleScaler(5, FLEET)
    # two 1-CPU trials fit the one 2-CPU m5; the third takes the on-demand c5 (c5 spot is
    # live); the fourth fits nothing the fleet may add
    events = scaler.step(0, {"a": C5}, {"a": busy()}, demand=[{"CPU": 1.0}] * 4)
    assert events.add == [M5, OD]
    assert scaler.to_add({}, [], [{"CPU": 1.0}] * 5) == [C5, M5, OD]  # 4 CPUs: 4 trials


def test_a_bundle_no_kind_can_hold_starts_nothing():
    scaler = IdleScaler(5, FLEET)
    assert scaler.to_add({}, [], [{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}]) == []
    # memory and object store are not modelled per kind: a new node has them
    assert scaler.to_add({}, [], [{"CPU": 1.0, "memory": 1e9}]) == [C5]


def test_an_idle_worker_removed_at_this_step_is_no_room_for_demand():
    scaler = IdleScaler(5, (C5,))
    events = scaler.step(10, {"a": C5}, {"a": idle(10)}, demand=[{"CPU": 1.0}])
    # odd but consistent: Ray reports a trial waiting while the node is idle (a race)
    assert events.remove == ["a"] and events.add == [C5]


def test_a_timeout_must_be_positive():
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout_s must be a finite number > 0"):
            IdleScaler(bad, FLEET)


def _node(node_id, status, idle_ms, cpu_used):
    return NodeInfo("", "", "", "127.0.0.1", node_status=status, node_id=node_id,
                    resource_usage=NodeUsage([ResourceUsage("CPU", 1.0, cpu_used),
                                              ResourceUsage("memory", 8e9, 0.0)], idle_ms))


def test_the_cluster_status_is_read_into_views_and_bundles(monkeypatch):
    """Ray's own status classes, filled by hand as ``get_cluster_status`` fills them."""
    import ray.autoscaler.v2.sdk as sdk

    status = ClusterStatus(
        active_nodes=[_node("run", "RUNNING", 0, 1.0), _node("drain", "DRAINING", 5000, 0.0)],
        idle_nodes=[_node("idle", "IDLE", 7500, 0.0)],
        resource_demands=ResourceDemandSummary(
            placement_group_demand=[PlacementGroupResourceDemand(
                [ResourceRequestByCount({"CPU": 1.0}, 2)], details="ab:PACK|PENDING")],
            ray_task_actor_demand=[RayTaskActorDemand([ResourceRequestByCount({"CPU": 0.5}, 1)])]))
    monkeypatch.setattr(sdk, "get_cluster_status", lambda address: status)
    nodes, waiting = ray_compat.cluster_status("127.0.0.1:1")
    assert nodes["run"] == (None, {"CPU": 0.0, "memory": 8e9})
    assert nodes["drain"][0] is None  # draining (a spot notice) is never idle
    assert nodes["idle"] == (7.5, {"CPU": 1.0, "memory": 8e9})
    assert waiting == [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 0.5}]


@pytest.mark.parametrize("value", ["0", "-3", "inf", "nan"])
def test_cluster_up_checks_the_idle_timeout_before_starting_anything(capsys, monkeypatch, value):
    """Fakes the local cluster: starting it fails the test."""
    def start(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr("tuner.spot.local.LocalSpotCluster", start)
    code, _, err = main(capsys, "cluster", "up", "--local", "--idle-timeout", value)
    assert f"--idle-timeout: must be a finite number > 0 (e.g. --idle-timeout 60), got " \
           f"{float(value):g}" in one_line_error(code, err)
