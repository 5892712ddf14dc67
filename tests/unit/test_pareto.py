"""The Pareto set of metric against dollars (tuner.summary.pareto), and which trial and which
value are the best (StudyRecord.best, StudyRecord.improves).

Pure data: trial tables are pandas frames shaped like ``TuneResult.trials`` (one row per
trial: trial_id, cost_usd and the metric's column); records are StudyRecord objects built
in memory (never saved). Nothing is faked. NaN and infinity as a best are in test_results.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tuner.record import StudyRecord, TrialEntry, TrialStatus
from tuner.summary import pareto


def table(*rows, metric="acc"):
    """Trials as ``(trial_id, cost_usd, metric value)``."""
    return pd.DataFrame([{"trial_id": t, "cost_usd": c, metric: v} for t, c, v in rows],
                        columns=["trial_id", "cost_usd", metric])


# --- the Pareto set --------------------------------------------------------------------------------

def test_in_mode_max_the_front_is_the_trials_no_cheaper_trial_matches_and_it_is_cheapest_first():
    trials = table(("pricey-best", 4.0, 0.9), ("mid", 2.0, 0.7), ("cheap", 1.0, 0.5),
                   ("worse-and-dearer", 3.0, 0.6),  # "mid" is cheaper and better
                   ("as-good-but-dearer", 2.5, 0.7))  # "mid" is cheaper, as good
    assert pareto(trials, "acc", "max") == ["cheap", "mid", "pricey-best"]


def test_in_mode_min_lower_values_are_better():
    trials = table(("cheap", 1.0, 0.5), ("mid", 2.0, 0.3), ("dearer-and-worse", 3.0, 0.4),
                   ("pricey-best", 4.0, 0.1), metric="loss")
    assert pareto(trials, "loss", "min") == ["cheap", "mid", "pricey-best"]
    # the same numbers read as max: the cheapest trial also has the highest value
    assert pareto(trials, "loss", "max") == ["cheap"]


def test_trials_tied_on_cost_and_metric_are_both_on_the_front():
    trials = table(("a", 1.0, 0.5), ("b", 1.0, 0.5), ("c", 2.0, 0.8))
    assert sorted(pareto(trials, "acc", "max")) == ["a", "b", "c"]


@pytest.mark.parametrize("mode,better,worse", [("max", 0.8, 0.6), ("min", 0.6, 0.8)])
def test_of_two_trials_at_the_same_cost_only_the_better_is_on_the_front(mode, better, worse):
    trials = table(("worse", 1.0, worse), ("better", 1.0, better))
    assert pareto(trials, "acc", mode) == ["better"]


def test_of_two_trials_as_good_only_the_cheaper_is_on_the_front():
    trials = table(("dear", 2.0, 0.7), ("cheap", 1.0, 0.7))
    assert pareto(trials, "acc", "max") == ["cheap"]


def test_pruned_trials_are_not_on_the_front_once_a_trial_completed():
    """A pruned trial is cheap because ASHA stopped it: not a choice of model to train."""
    trials = table(("stopped-early", 0.1, 0.08), ("done", 1.0, 0.9), ("dear", 2.0, 0.95))
    trials["status"] = ["pruned", "completed", "completed"]
    assert pareto(trials, "acc", "max") == ["done", "dear"]
    trials["status"] = ["pruned", "interrupted", "failed"]  # none completed: as the best does
    assert pareto(trials, "acc", "max") == ["stopped-early", "done"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_a_trial_without_a_finite_metric_is_neither_on_the_front_nor_hides_others(bad):
    trials = table(("free-but-unknown", 0.0, bad), ("a", 1.0, 0.5), ("b", 2.0, 0.7))
    assert pareto(trials, "acc", "max") == ["a", "b"]
    assert pareto(trials, "acc", "min") == ["a"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_a_trial_without_a_finite_cost_is_neither_on_the_front_nor_hides_others(bad):
    trials = table(("unpriced-best", bad, 0.99), ("a", 1.0, 0.5), ("b", 2.0, 0.7))
    assert pareto(trials, "acc", "max") == ["a", "b"]


def test_a_failed_trial_is_neither_on_the_front_nor_hides_others():
    """Its configuration made the trainable raise: not one to pick, however cheap or good."""
    trials = table(("failed", 0.5, 0.9), ("a", 1.0, 0.5), ("b", 2.0, 0.7))
    trials["status"] = ["failed", "completed", "completed"]
    assert pareto(trials, "acc", "max") == ["a", "b"]


def test_a_single_trial_is_the_front():
    assert pareto(table(("only", 0.25, 0.5)), "acc", "max") == ["only"]
    assert pareto(table(("only", 0.25, 0.5)), "acc", "min") == ["only"]


def test_no_usable_trial_means_an_empty_front():
    assert pareto(table(), "acc", "max") == []
    assert pareto(table(("a", math.nan, 0.5), ("b", 1.0, math.nan)), "acc", "max") == []


def test_a_trial_that_cost_nothing_is_on_the_front():
    """A trial never charged (no priced node) has cost 0.0 in the table: cheapest of all."""
    trials = table(("uncharged", 0.0, 0.2), ("a", 1.0, 0.5))
    assert pareto(trials, "acc", "max") == ["uncharged", "a"]


# --- the best trial and the best value -----------------------------------------------------------

def record(mode, *trials):
    """An in-memory study record with trials ``(trial_id, status, metric)``."""
    return StudyRecord(
        path="unused", name="s", metric="acc", mode=mode, num_samples=len(trials),
        mlflow_uri="sqlite:///unused.db", mlflow_experiment="s", parent_run_id="p",
        settings={"metric": "acc", "mode": mode},
        trials={t: TrialEntry(t, TrialStatus(status), {"id": t}, metric=metric)
                for t, status, metric in trials})


@pytest.mark.parametrize("mode,value,than,expected", [
    ("max", 0.6, 0.5, True), ("max", 0.4, 0.5, False), ("max", 0.5, 0.5, False),
    ("min", 0.4, 0.5, True), ("min", 0.6, 0.5, False), ("min", 0.5, 0.5, False),
    ("max", -3.0, None, True), ("min", 7, None, True),
])
def test_a_value_improves_only_when_strictly_better_in_the_studys_mode(mode, value, than,
                                                                       expected):
    assert record(mode).improves(value, than) is expected


def test_a_bool_is_not_a_value_that_improves_anything():
    assert not record("max").improves(True, None)


@pytest.mark.parametrize("mode,best_id", [("max", "high"), ("min", "low")])
def test_the_best_trial_is_the_completed_one_with_the_best_final_metric(mode, best_id):
    r = record(mode, ("low", "completed", 0.2), ("high", "completed", 0.9),
               ("mid", "completed", 0.5), ("silent", "completed", None))
    assert r.best().trial_id == best_id


@pytest.mark.parametrize("mode", ["max", "min"])
def test_a_completed_trial_beats_a_pruned_one_whose_value_looks_better(mode):
    """A pruned trial's last value was measured at lower fidelity."""
    pruned = 0.99 if mode == "max" else 0.01
    r = record(mode, ("pruned", "pruned", pruned), ("done", "completed", 0.5))
    assert r.best().trial_id == "done"


@pytest.mark.parametrize("mode,best_id", [("max", "b"), ("min", "a")])
def test_without_a_completed_trial_the_best_is_among_all_that_reported(mode, best_id):
    r = record(mode, ("a", "pruned", 0.3), ("b", "running", 0.8), ("c", "interrupted", 0.5),
               ("d", "completed", math.nan), ("e", "stopped", 0.4))
    assert r.best().trial_id == best_id


@pytest.mark.parametrize("mode", ["max", "min"])
def test_a_failed_trial_is_never_the_best_whatever_it_reported_before_it_failed(mode):
    """Its configuration made the trainable raise on every try."""
    failed = 0.99 if mode == "max" else 0.01
    r = record(mode, ("failed", "failed", failed), ("pruned", "pruned", 0.5))
    assert r.best().trial_id == "pruned"
    assert record(mode, ("a", "failed", failed), ("b", "failed", 0.5)).best() is None


def test_a_study_without_trials_has_no_best():
    assert record("max").best() is None
