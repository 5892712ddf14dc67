"""Which trials can ever run: a trial's resources must all fit on one node that the cluster
has or its autoscaler may add, else the study stops at once with what the nodes have
(instead of waiting forever for a GPU that will never come)."""

from __future__ import annotations

from tuner.engine.run import trial_slots, unschedulable

LAPTOP = [{"CPU": 2.0, "memory": 8e9}]
SPOT = [{"CPU": 0.0, "memory": 8e9}, {"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]


def test_a_trial_that_fits_a_node_is_schedulable():
    assert unschedulable({"cpu": 1}, LAPTOP) is None
    assert unschedulable({"cpu": 1, "gpu": 0}, SPOT) is None


def test_a_gpu_on_a_cluster_without_gpus_is_named_with_what_the_nodes_have():
    reason = unschedulable({"gpu": 1}, SPOT)
    assert reason is not None
    assert "GPU too large" in reason
    assert "3 x {CPU 1}" in reason and "1 x {CPU 0}" in reason


def test_a_misspelt_resource_no_node_has_is_named():
    reason = unschedulable({"cpus": 1}, LAPTOP)
    assert reason is not None and "cpus too large" in reason


def test_resources_must_fit_on_one_node_not_across_the_cluster():
    assert unschedulable({"cpu": 2}, SPOT) is not None  # 3 CPUs in all, 1 per node


def test_a_node_type_the_autoscaler_may_add_counts():
    assert unschedulable({"gpu": 1}, [*SPOT, {"CPU": 4.0, "GPU": 1.0}]) is None


def test_a_node_type_of_unknown_shape_may_fit():
    assert unschedulable({"gpu": 1}, [*SPOT, {}]) is None


def test_trial_slots_count_the_scarcest_resource():
    cluster = {"CPU": 6.0, "GPU": 1.0, "labelled": 4.0, "memory": 1e10}
    assert trial_slots(cluster, {"cpu": 1}) == 6
    assert trial_slots(cluster, {"cpu": 1, "labelled": 1}) == 4
    assert trial_slots(cluster, {"cpu": 2, "gpu": 0.5}) == 2
    assert trial_slots(cluster, {"cpu": 0.5}) == 12
    assert trial_slots(cluster, {"cpu": 8}) == 1  # never fewer than one
    assert trial_slots({"CPU": 0.0}, {"cpu": 1}) == 1  # an autoscaling cluster, not yet up
