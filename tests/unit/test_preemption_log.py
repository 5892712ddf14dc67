"""Tune's ERROR line for a trial task lost to a preempted node is dropped during a study;
every other trial error still shows.

Real: Ray's exception classes, built as Ray builds them from the GCS's death context, and
Python logging. Faked: the log records, written here as Tune writes its own (no cluster runs).
"""

from __future__ import annotations

import logging

import pytest
from ray.core.generated import common_pb2
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from tuner import ray_compat
from tuner.engine.run import _study_process


def died(reason: int) -> ActorDiedError:
    context = common_pb2.ActorDiedErrorContext(actor_id=b"\x01" * 16)
    context.node_death_info.reason = reason
    return ActorDiedError(context)


PREEMPTED = died(common_pb2.NodeDeathInfo.AUTOSCALER_DRAIN_PREEMPTED)
NODE_LOST = died(common_pb2.NodeDeathInfo.UNEXPECTED_TERMINATION)


def shown(exception: BaseException, tmp_path, caplog, message: str = "") -> bool:
    name, prefix = ray_compat.trial_error_log()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=name), _study_process(str(tmp_path)):
        logging.getLogger(name).error(message or f"{prefix} for trial train_0a3d121c",
                                      exc_info=exception)
    return bool(caplog.records)


def test_a_trial_task_lost_to_a_preempted_node_logs_nothing(tmp_path, caplog):
    assert PREEMPTED.preempted  # as Ray marks it: the node went after its drain's deadline
    assert not shown(PREEMPTED, tmp_path, caplog)


def test_other_lost_trial_tasks_still_log_their_error(tmp_path, caplog):
    assert shown(NODE_LOST, tmp_path, caplog)  # a node lost without a notice
    assert shown(ActorUnavailableError("connection reset", b"\x01" * 16), tmp_path, caplog)
    assert shown(RayTaskError("train", "Traceback ...", ValueError("bad lr")), tmp_path, caplog)


def test_other_error_lines_with_a_preemption_still_show(tmp_path, caplog):
    assert shown(PREEMPTED, tmp_path, caplog, message="Experiment state snapshotting failed")


def test_a_preemption_counted_as_a_failure_shows_as_one(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE", "1")  # Tune counts it: show it
    assert shown(PREEMPTED, tmp_path, caplog)


def test_the_filter_goes_with_the_study(tmp_path, caplog):
    name, prefix = ray_compat.trial_error_log()
    with _study_process(str(tmp_path)):
        pass
    with caplog.at_level(logging.ERROR, logger=name):
        logging.getLogger(name).error(f"{prefix} for trial t", exc_info=PREEMPTED)
    assert caplog.records  # a plain Ray Tune run later in the process logs as Ray does


@pytest.mark.parametrize("exception", [None, ValueError("x")])
def test_what_is_no_actor_error_is_no_preemption(exception):
    assert not ray_compat.is_preemption(exception)
