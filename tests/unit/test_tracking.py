"""The MLflow edge: trial runs are queued and written by one background thread.

Real MLflow on a local sqlite store; nothing faked, no Ray.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from tuner.tracking import Tracker, flush_all


def _tracker(tmp_path, batch_s=0.05):
    return Tracker(f"sqlite:///{tmp_path}/mlflow.db", "specs", batch_s=batch_s)


def test_a_trial_run_is_written_in_order_once_flushed(tmp_path):
    tracker = _tracker(tmp_path)
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    created = []
    tracker.start_trial(parent, "s", "t1", {"lr": 0.1}, on_created=created.append)
    for step in (1, 2, 3):
        tracker.log_metrics("t1", {"acc": step / 10}, step)
    tracker.end_run("t1", "pruned", {"tuner.iterations": 3})
    flush_all()

    client = MlflowClient(tracker.uri)
    (run_id,) = created
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["tuner.status"] == "pruned"
    assert run.data.params == {"lr": "0.1"}
    history = client.get_metric_history(run_id, "acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_after_a_restart_a_trial_finds_its_run_instead_of_creating_another(tmp_path):
    first = _tracker(tmp_path)
    parent = first.start_study("s", {"metric": "acc"}, {})
    ids = []
    first.start_trial(parent, "s", "t1", {"lr": 0.1}, on_created=ids.append)
    first.flush()  # the run exists; say the driver died before recording its id

    second = _tracker(tmp_path)
    assert second.open_trial_runs(parent) == {"t1": ids[0]}
    second.start_trial(parent, "s", "t1", {"lr": 0.1}, again=True, on_created=ids.append)
    second.end_run("t1", "completed")
    second.flush()
    assert ids[0] == ids[1]
    children = MlflowClient(first.uri).search_runs(
        [first.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.info.run_id for r in children] == [ids[0]]
    assert second.open_trial_runs(parent) == {}


def test_the_driver_does_not_wait_for_the_store(tmp_path):
    tracker = _tracker(tmp_path, batch_s=30.0)  # the writer sleeps before its first batch
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    tracker.start_trial(parent, "s", "t1", {})
    tracker.log_metrics("t1", {"acc": 1.0}, 1)
    client = MlflowClient(tracker.uri)
    assert client.search_runs([tracker.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent}'") == []
