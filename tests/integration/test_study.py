"""A study end to end on a real local Ray cluster, with real Optuna storage and MLflow.

Nothing is mocked: trials run as Ray actors, ASHA decides, Optuna's journal file
holds the study, and MLflow runs are read back with `MlflowClient.search_runs`.
The trainables are synthetic learning curves so the tests take seconds.
"""

from __future__ import annotations

import math
import os

import optuna
import pytest
from mlflow.tracking import MlflowClient

import tuner
from tuner.errors import ConfigError, StudyError

SPACE = {
    "rate": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
    "ceiling": {"type": "float", "low": 0.5, "high": 1.0},
    "opt": {"type": "categorical", "choices": ["a", "b"]},
    "extra": {"type": "int", "low": 1, "high": 3, "when": {"opt": "b"}},
}


def curve(config):
    """Accuracy climbing to `ceiling` at speed `rate`; checkpoints every iteration."""
    state = tuner.load_state() or {"it": 0}
    while state["it"] < 9:
        state["it"] += 1
        acc = config["ceiling"] * (1 - math.exp(-config["rate"] * state["it"]))
        tuner.report({"acc": acc, "loss": 1 - acc}, state=state)


def test_asha_prunes_and_optuna_and_mlflow_record_it(ray_cluster, study_dir, mlflow_server,
                                                     capsys):
    result = tuner.tune(curve, SPACE, metric="acc", mode="max", num_samples=10, max_t=9,
                        grace_period=1, reduction_factor=3, name="asha",
                        mlflow_uri=mlflow_server, seed=1, verbose=False)
    assert "View run" not in capsys.readouterr().out  # MLflow's own links: the study has its own
    trials = result.trials
    assert len(trials) == 10
    pruned = trials[trials.status == "pruned"]
    completed = trials[trials.status == "completed"]
    assert len(pruned) >= 3 and len(completed) >= 1
    assert (pruned.iterations < 9).all() and (completed.iterations == 9).all()
    assert result.best_metric == completed.acc.max()
    assert result.best_config["rate"] == completed.loc[completed.acc.idxmax(), "config"]["rate"]

    # Optuna: ASHA's stops are PRUNED with their curve, not COMPLETE with a truncated value.
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        os.path.join(result.path, "optuna_journal.log")))
    study = optuna.load_study(study_name="asha", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(pruned)
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(completed)
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, steps[-1] + 1))  # the whole curve, its last step too
        if t.state == optuna.trial.TrialState.PRUNED:
            assert steps[-1] < 9
        else:
            assert steps[-1] == 9 and t.intermediate_values[9] == t.value
            assert t.value == pytest.approx(completed.acc.max()) or t.value <= completed.acc.max()
    assert study.best_value == pytest.approx(result.best_metric)

    # MLflow: one parent run, one nested child per trial, metrics by iteration.
    client = MlflowClient(mlflow_server)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["tuner.best_acc"] == pytest.approx(result.best_metric)
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 10
    by_run = {r.info.run_id: r for r in children}
    for _, row in trials.iterrows():
        run = by_run[row.mlflow_run_id]
        assert run.data.tags["tuner.status"] == row.status
        assert run.data.params["rate"] == str(row.config["rate"])
        history = client.get_metric_history(run.info.run_id, "acc")
        assert [m.step for m in history] == list(range(1, row.iterations + 1))
        assert history[-1].value == pytest.approx(row.acc)


def crash_once(config):
    """Crashes the first time it reaches iteration 5; says where each attempt started."""
    marker = os.path.join(config["dir"], "crashed")
    state = tuner.load_state() or {"it": 0}
    with open(os.path.join(config["dir"], "starts"), "a") as f:
        f.write(f"{state['it']}\n")
    while state["it"] < 8:
        if state["it"] == 5 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("simulated crash")
        state["it"] += 1
        tuner.report({"acc": state["it"] / 8}, state=state, checkpoint_every=2)


def test_a_crashed_trial_resumes_from_its_last_checkpoint(ray_cluster, study_dir):
    space = {"dir": str(study_dir), "x": {"type": "float", "low": 0, "high": 1}}
    result = tuner.tune(crash_once, space, metric="acc", num_samples=1, max_t=8,
                        grace_period=8, max_failures=2, name="crash", verbose=False)
    row = result.trials.iloc[0]
    assert row.status == "completed" and row.iterations == 8
    # Checkpoints at 2 and 4 (every 2): the crash after 5 resumes from 4, not 0.
    assert (study_dir / "starts").read_text().split() == ["0", "4"]
    assert row.restarts == 1 and row.restarted_at == [4]
    assert "simulated crash" in row.error
    client = MlflowClient(result.mlflow_uri)  # the retry kept its run: no duplicate
    runs = client.search_runs([client.get_run(result.parent_run_id).info.experiment_id],
                              "tags.`tuner.kind` = 'trial'")
    assert [r.info.run_id for r in runs] == [row.mlflow_run_id]
    assert client.get_run(row.mlflow_run_id).data.tags["tuner.restarts"] == "1"


def always_fails(config):
    tuner.report({"acc": 0.5})
    raise RuntimeError("out of memory")


def test_a_study_whose_every_trial_failed_ends_its_parent_run_failed(ray_cluster, study_dir):
    result = tuner.tune(always_fails, {"x": {"type": "float", "low": 0, "high": 1}},
                        metric="acc", num_samples=2, max_failures=0, name="allfail",
                        verbose=False)
    assert result.state == "finished" and result.best_trial_id is None
    client = MlflowClient(result.mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["tuner.no_best"].startswith("every trial failed (2); ")
    for trial_run in result.trials["mlflow_run_id"]:
        run = client.get_run(trial_run)
        assert run.info.status == "FAILED"
        assert run.data.tags["tuner.error"] == "RuntimeError: out of memory"


def wrong_metric(config):
    """Reports `accuracy` until the file `config["fixed"]` names exists (the user's fix:
    Tune resumes a study only with the trainable it started, by name)."""
    tuner.report({"val_accuracy" if os.path.exists(config["fixed"]) else "accuracy": 0.5})


def test_an_unknown_metric_stops_the_study_with_a_clear_error(ray_cluster, study_dir):
    """The error names where the metric was set; the record says why the study stopped, so
    `tuner report` does not offer a plain resume; once the trainable reports the metric,
    `tuner resume` finishes the study."""
    from tuner.summary import format_table

    fixed = study_dir / "fixed"
    with pytest.raises(StudyError, match=r"^tune\(\): metric: trial \w+ reported \['accuracy'\] "
                                         r"but not the study's metric 'val_accuracy'"):
        tuner.tune(wrong_metric, {"fixed": {"type": "categorical", "choices": [str(fixed)]}},
                   metric="val_accuracy", num_samples=2, name="wrong", verbose=False)
    path = study_dir / "tuner_results" / "wrong"
    record = tuner.TuneResult.load(path)
    client = MlflowClient(record.mlflow_uri)
    assert client.get_run(record.parent_run_id).info.status == "KILLED"
    assert client.get_run(record.parent_run_id).data.tags["tuner.stop_reason"] == "metric"
    assert record.trials["iterations"].max() == 1  # the iteration it ran is on the record
    assert record.stop_reason == "metric"
    assert format_table(record).splitlines()[-1] == (
        f"The study stopped: a trial reported without its metric 'val_accuracy'; once the "
        f"trainable reports it, continue with: tuner resume {path} (a study's metric cannot "
        f"change: for another, start a new study)")

    fixed.touch()
    resumed = tuner.resume(str(path), trainable=wrong_metric, verbose=False)
    assert resumed.state == "finished" and resumed.stop_reason is None
    assert resumed.best_metric == 0.5


def reserved_metric(config):
    tuner.report({"acc": 0.5, "tuner.cost_usd": 0.0})


def test_a_metric_in_the_reserved_namespace_is_refused(ray_cluster, study_dir):
    with pytest.raises(StudyError, match=r"reported \['tuner.cost_usd'\]: metric names starting "
                                         r"with `tuner.` are reserved"):
        tuner.tune(reserved_metric, {"x": {"type": "float", "low": 0, "high": 1}},
                   metric="acc", num_samples=1, name="reserved", verbose=False)


def test_an_unreachable_mlflow_fails_before_any_trial(ray_cluster, study_dir):
    with pytest.raises(ConfigError, match=r"^tune\(\): mlflow_uri: MLflow tracking store "
                                          r"'http://127.0.0.1:9/' is not usable"):
        tuner.tune(curve, SPACE, metric="acc", num_samples=2, name="nomlflow",
                   mlflow_uri="http://127.0.0.1:9/", verbose=False)
    assert not (study_dir / "tuner_results" / "nomlflow").exists()


def test_a_study_leaves_the_process_as_it_found_it(ray_cluster, study_dir):
    """Tune's switches, log levels and Optuna's verbosity are the study's own: a plain
    Ray Tune run later in the same notebook inherits none of them."""
    import logging

    env = dict(os.environ)
    levels = {n: logging.getLogger(n).level for n in ("", "ray.tune", "ray.train", "ray.air")}
    optuna.logging.set_verbosity(optuna.logging.INFO)
    tuner.tune(curve, SPACE, metric="acc", mode="max", num_samples=2, max_t=2,
               name="tidy", seed=1, verbose=False)
    assert dict(os.environ) == env
    assert {n: logging.getLogger(n).level for n in levels} == levels
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
