"""The engine's pieces without a cluster: what a study shows of Ray's and the cluster's
trouble (a failed exchange of cluster shares is said once; TPE's time inside the space
function draws no Ray advice), and what the searcher tells Optuna when a budget stops it.

Faked: the GCS's key-value calls (they raise, as when the GCS is busy or restarting), the
study's bookkeeping (an object with the two members the exchange reads) and Ray's slow-space
threshold. Real: the callback, ASHA, OptunaSearch and Optuna (in memory).
"""

from __future__ import annotations

import logging
import os

from tuner import ray_compat
from tuner.engine import callbacks
from tuner.engine.search import _Asha, user_metrics
from tuner.engine.trial import BUSY_S, BUSY_UNTIL, NODE_ID


class Book:
    cluster_key = "study/x-0"

    def published(self, ended: bool = False) -> bytes:
        return b"{}"

    def peers_seen(self, items):
        raise AssertionError("no peers were read")


def test_a_failed_exchange_of_cluster_shares_is_said_once_and_retried(monkeypatch, caplog,
                                                                      tmp_path):
    calls = []

    def put(key, value):
        calls.append(key)
        raise ConnectionError("GCS unavailable")

    monkeypatch.setattr(ray_compat, "cluster_kv_put", put)
    monkeypatch.setitem(callbacks._BOOKS, str(tmp_path), Book())
    study = callbacks._StudyCallback(str(tmp_path), _Asha(time_attr="training_iteration",
                                                          max_t=4), verbose=False)
    with caplog.at_level(logging.WARNING, logger=callbacks.__name__):
        for _ in range(3):
            study._share_cluster()
    assert len(calls) == 3  # every poll tries again
    said = [r.getMessage() for r in caplog.records if r.name == callbacks.__name__]
    assert said == ["could not exchange cluster shares with other studies (ConnectionError: "
                    "GCS unavailable); trying again at each poll"]


def test_tpes_own_time_in_the_space_function_draws_no_advice_to_move_training(monkeypatch,
                                                                           tmp_path):
    """OptunaSearch warns when the space's define-by-run function takes over 1 s (TPE's
    sampling runs inside ours). Faked: that threshold, set to 0 so every suggestion is slow."""
    import warnings

    import optuna
    from ray.tune.search.optuna import optuna_search

    from tuner.engine.run import _study_process
    from tuner.engine.search import _Search
    from tuner.search_space import load_space

    monkeypatch.setattr(optuna_search, "DEFINE_BY_RUN_WARN_THRESHOLD_S", -1)
    space = load_space({"lr": {"type": "float", "low": 0.1, "high": 1.0}})
    search = _Search(_Asha(time_attr="training_iteration", max_t=4), space=space.suggest,
                     metric="acc", mode="max")
    study = optuna.create_study(direction="maximize")

    def suggest():
        with warnings.catch_warnings(record=True) as seen:
            warnings.filterwarnings("always", category=UserWarning, append=True)
            search._suggest_from_define_by_run_func(space.suggest, study.ask())
        return [str(w.message) for w in seen if "Define-by-run" in str(w.message)]

    with _study_process(str(tmp_path)):
        assert suggest() == []
    assert len(suggest()) == 1  # a plain Ray Tune run afterwards keeps Ray's warning


def test_tunes_closing_list_of_incomplete_trials_is_left_to_the_study_s_table(tmp_path, caplog):
    """Tune's own logger and message (ray.tune.tune logs the list when a trial failed); the
    line shows again once the study is over."""
    import logging

    from ray.tune import tune as tune_module

    from tuner.engine.run import _study_process

    def incomplete_line():
        caplog.clear()
        tune_module.logger.error("Trials did not complete: %s", ["train_a1b2c3d4"])
        return [r.getMessage() for r in caplog.records]

    with caplog.at_level(logging.ERROR, logger=tune_module.logger.name):
        with _study_process(str(tmp_path)):
            assert incomplete_line() == []
            tune_module.logger.error("something else")
            assert [r.getMessage() for r in caplog.records] == ["something else"]
        assert incomplete_line() == ["Trials did not complete: ['train_a1b2c3d4']"]


def test_a_study_leaves_none_of_its_per_study_state_in_the_process(tmp_path):
    """A notebook that resumes a study quietly, then runs another, keeps nothing of the first:
    its bookkeeping, its checked checkpoints and the quiet switch resume_study set."""
    from tuner.engine.run import _study_process

    study = str(tmp_path)
    callbacks.VERBOSE[study] = False  # as resume_study(verbose=False) sets it
    callbacks._CHECKED[study] = {"t1"}
    with _study_process(study):
        pass
    assert all(study not in per for per in (callbacks.VERBOSE, callbacks._CHECKED,
                                            callbacks._BOOKS))


def test_a_budget_stop_after_a_resume_leaves_what_the_last_driver_told_optuna(tmp_path):
    """Stopped at its budget, the searcher tells Optuna how its unfinished trials ended
    (PRUNED if measured, else FAIL with the configuration enqueued). A searcher restored from
    a snapshot older than that (the next driver, after `tuner resume --budget-usd`) stops at
    its budget again: the trials told already are left as they are, and none is enqueued
    twice. Faked: the snapshot (the searcher's record of ended trials set back)."""
    import optuna

    from tuner.engine.search import _Search
    from tuner.search_space import load_space

    space = load_space({"lr": {"type": "float", "low": 0.1, "high": 1.0}})
    search = _Search(_Asha(time_attr="training_iteration", max_t=4, metric="acc", mode="max"),
                     space=space.suggest, metric="acc", mode="max")
    search.suggest("measured")
    search.suggest("unmeasured")
    search.on_trial_result("measured", {"acc": 0.5, "training_iteration": 1})
    snapshot = set(search._completed_trials)
    search.end_unfinished()
    search._completed_trials = snapshot
    search.end_unfinished()

    states = [t.state for t in search._study.get_trials()]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.WAITING]


def test_what_ray_and_the_trial_wrapper_add_to_a_result_is_not_the_users_metrics():
    """Only the trainable's own numbers go to MLflow and name the metrics a study can use."""
    result = {"acc": 0.5, "loss": 2, "note": "text", "training_iteration": 3,
              "time_this_iter_s": 0.4, NODE_ID: "ab12", BUSY_S: 0.41, BUSY_UNTIL: 1.8e9,
              "config/lr": 0.1}
    assert user_metrics(result) == {"acc": 0.5, "loss": 2.0}


def test_a_restored_callback_speaks_as_this_driver_asks_not_as_the_first_did(monkeypatch, tmp_path):
    """Tune restores the study's callback with the first driver's ``verbose``; `tuner resume
    --quiet` must still be quiet. Faked: the study book (only its ``verbose`` is read)."""
    made = []
    monkeypatch.setattr(callbacks, "StudyBook", lambda path, verbose: made.append(verbose))
    restored = callbacks._StudyCallback(str(tmp_path), _Asha(metric="acc", mode="max"),
                                        verbose=True)
    monkeypatch.setitem(callbacks.VERBOSE, str(tmp_path), False)  # what resume_study sets
    restored.book  # noqa: B018 (made on first use)
    assert made == [False]


def test_asha_ranks_a_rung_of_nan_values_without_numpy_warning_the_user():
    """A study whose trials report only NaN goes on (they are never the best); numpy's
    All-NaN warning from ASHA's cutoff is not printed in the middle of its progress lines.
    Faked: Tune's trial objects (only their id is read)."""
    import math
    import warnings
    from types import SimpleNamespace

    asha = _Asha(time_attr="training_iteration", metric="acc", mode="max", max_t=9,
                 grace_period=1, reduction_factor=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(3):
            trial = SimpleNamespace(trial_id=f"t{i}")
            asha.on_trial_add(None, trial)
            assert asha.on_trial_result(None, trial, {"training_iteration": 1,
                                                      "acc": math.nan}) == "CONTINUE"


def _failed_task(user_file: str) -> BaseException:
    """A trial task's failure as Tune receives it: Ray's RayTaskError, made an instance of
    its cause, over a traceback through Ray's frames, tuner's wrapper and the user's code.
    Faked: the traceback text (Ray builds it in the worker); the classes are Ray's own."""
    import ray
    from ray.exceptions import RayTaskError

    import tuner

    ray_dir, tuner_dir = os.path.dirname(ray.__file__), os.path.dirname(tuner.__file__)
    text = "\n".join([
        "Traceback (most recent call last):",
        f'  File "{ray_dir}/tune/trainable/function_trainable.py", line 249, in _trainable_func',
        "    output = fn()",
        "             ^^^^",
        f'  File "{tuner_dir}/ray_compat.py", line 105, in trial',
        "    return trainable(config)",
        f'  File "{user_file}", line 5, in train',
        '    raise ValueError("bad shape (3, 4)")',
        "ValueError: bad shape (3, 4)"])
    return RayTaskError("train", text, ValueError("bad shape (3, 4)")).as_instanceof_cause()


def _tune_logs(exception: BaseException) -> logging.LogRecord | None:
    """The record Tune logs for a failed trial task, through the study's filter (None:
    dropped)."""
    from tuner.engine.run import _TrialErrorsInShort

    name, prefix = ray_compat.trial_error_log()
    record = logging.LogRecord(name, logging.ERROR, __file__, 1,
                               f"{prefix} for trial train_5fcd5132", (), (type(exception),
                                                                        exception, None))
    return record if _TrialErrorsInShort(prefix).filter(record) else None


def test_a_failed_trial_is_logged_with_the_users_frames_and_not_rays():
    """A trial that raises: Tune's 40-odd lines of traceback become the user's frames and
    the error, with where the whole traceback is."""
    record = _tune_logs(_failed_task("/home/me/train.py"))
    assert record is not None and record.exc_info is None
    assert record.getMessage() == (
        'trial 5fcd5132 failed:\n  File "/home/me/train.py", line 5, in train\n'
        '    raise ValueError("bad shape (3, 4)")\nValueError: bad shape (3, 4)\n'
        "  (the whole traceback, Ray's frames too: trial_5fcd5132/error.txt in the study's "
        "directory)")


def test_a_failure_logged_already_is_one_line_for_a_retry_and_for_another_trial():
    """A trainable that always raises, retried max_failures times in every trial: 24 blocks
    of the same 5 lines for 6 trials. The first stays whole; the same again is one line."""
    from tuner.engine.run import _TrialErrorsInShort

    name, prefix = ray_compat.trial_error_log()
    study = _TrialErrorsInShort(prefix)

    def logged(trial, exception):
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, f"{prefix} for trial "
                                   f"train_{trial}", (), (type(exception), exception, None))
        assert study.filter(record)
        return record.getMessage()

    first = logged("5fcd5132", _failed_task("/home/me/train.py"))
    assert first.startswith("trial 5fcd5132 failed:\n  File \"/home/me/train.py\", line 5")
    assert logged("5fcd5132", _failed_task("/home/me/train.py")) == (
        "trial 5fcd5132 failed: ValueError: bad shape (3, 4) (the same as its failure above; "
        "trial_5fcd5132/error.txt)")
    assert logged("0a1b2c3d", _failed_task("/home/me/train.py")) == (
        "trial 0a1b2c3d failed: ValueError: bad shape (3, 4) (the same as trial 5fcd5132's "
        "failure above; trial_0a1b2c3d/error.txt)")
    elsewhere = logged("0a1b2c3d", _failed_task("/home/me/other.py"))  # other frames: whole
    assert elsewhere.startswith("trial 0a1b2c3d failed:\n  File \"/home/me/other.py\"")


def test_a_failure_with_no_user_frame_or_that_cannot_be_read_keeps_tunes_whole_log(
        monkeypatch):
    """Nothing of the trainable's in it (Ray failed on its own), an exception that is not a
    task's, or a traceback the filter cannot read: Tune's record is left as it was, and
    the study goes on (a filter that raised would stop it)."""
    import ray

    inside_ray = _failed_task(os.path.join(os.path.dirname(ray.__file__), "worker.py"))
    for exception in (inside_ray, RuntimeError("node died")):
        record = _tune_logs(exception)
        assert record is not None and record.exc_info is not None
        assert record.getMessage() == "Trial task failed for trial train_5fcd5132"

    def unreadable(exception):
        raise AttributeError("traceback_str")

    monkeypatch.setattr(ray_compat, "user_traceback", unreadable)
    record = _tune_logs(_failed_task("/home/me/train.py"))
    assert record is not None and record.exc_info is not None
