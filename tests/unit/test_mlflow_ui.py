"""What a person sees of a study in MLflow's UI and in our own output: trial runs with the
trials' own times, a training experiment, a saved cost-against-metric chart and the links
that open it, the Pareto set as the study run's description, and dollars written readably.

Real: MLflow on a sqlite store in a tmp dir, the study record, matplotlib. Faked: time (a
clock the test moves, so the runs' times are known exactly); no Ray, no browser (that the UI
shows what these tags describe is `make ui-test`'s job, in headless Chromium).
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tuner.mlflow_ui import cost_view_url, runs_url, ui_address
from tuner.record import StudyRecord, TrialEntry, TrialStatus
from tuner.result import TuneResult
from tuner.study import StudyBook, _Progress
from tuner.summary import _tick, format_table, money, pareto_note, plot_pareto
from tuner.tracking import EXPERIMENT_KIND_TAG, NOTE_TAG, TRAINING_KIND, Tracker, flush_all, study_urls

T0 = 1_700_000_000.0  # a trial's start, in epoch seconds


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A sqlite store shared by this module's tests (a new one costs seconds to create);
    each test has experiments of its own."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _study(tmp_path, store, experiment, clock=None):
    """A new study (record, parent run) and its StudyBook on ``store``."""
    parent = Tracker(store, experiment).start_study(
        "s", {"metric": "acc", "mode": "max", "num_samples": 2}, {})
    record = StudyRecord.create(
        str(tmp_path / "study"), name="s", metric="acc", mode="max", num_samples=2,
        mlflow_uri=store, mlflow_experiment=experiment, parent_run_id=parent,
        settings={"metric": "acc", "mode": "max"})
    return StudyBook(record.path, verbose=False, clock=clock or Clock())


# --- 1. a trial's run spans the trial, not the writer's batch ---------------------------------

def test_a_trial_run_starts_when_tune_started_the_trial_and_ends_when_it_ended(tmp_path, store):
    clock = Clock()
    book = _study(tmp_path, store, "times", clock=clock)
    book.trial_started("t1", {"lr": 0.1})
    clock.now += 12.5
    book.trial_result("t1", 1, {"acc": 0.5}, None, 12.5)
    clock.now += 30.25
    book.trial_ended("t1", TrialStatus.COMPLETED)
    flush_all()

    run = MlflowClient(book.tracker.uri).get_run(book.record.trials["t1"].mlflow_run_id)
    assert run.info.start_time == T0 * 1000  # written by the writer thread, later
    assert run.info.end_time == (T0 + 42.75) * 1000
    assert run.info.status == "FINISHED"


def test_queued_start_and_end_times_are_the_ones_given_not_the_write_times(store):
    tracker = Tracker(store, "queued-times", batch_s=0.05)
    parent = tracker.start_study("s", {}, {})
    ids: list[str] = []
    tracker.start_trial(parent, "s", "t1", {}, on_created=ids.append, started=T0)
    tracker.start_trial(parent, "s", "t2", {}, on_created=ids.append, started=T0 + 1)
    tracker.end_run("t1", "pruned", ended=T0 + 3.001)
    tracker.end_run("t2", "failed", ended=T0 + 60)
    tracker.flush()

    client = MlflowClient(tracker.uri)
    runs = [client.get_run(i).info for i in ids]
    assert [(r.start_time, r.end_time, r.status) for r in runs] == [
        (T0 * 1000, T0 * 1000 + 3001, "FINISHED"), ((T0 + 1) * 1000, (T0 + 60) * 1000, "FAILED")]


# --- 2. the experiment is a training experiment -----------------------------------------------

def test_the_experiment_is_created_as_a_training_experiment(store):
    tracker = Tracker(store, "made-by-tuner")
    tags = MlflowClient(tracker.uri).get_experiment(tracker.experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND == "custom_model_development"


def test_an_experiment_made_before_gets_the_kind_unless_it_has_one(store):
    client = MlflowClient(store)
    bare = client.create_experiment("bare")
    genai = client.create_experiment("genai", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    Tracker(store, "bare")
    Tracker(store, "genai")
    assert client.get_experiment(bare).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert client.get_experiment(genai).tags[EXPERIMENT_KIND_TAG] == "genai_development"


# --- 3. one link to the trials' metric against dollars ----------------------------------------

def test_the_study_saves_a_chart_of_its_trials_metric_against_cost_and_links_it(store):
    tracker = Tracker(store, "chart")
    parent = tracker.start_study("s", {"metric": "acc", "mode": "min", "num_samples": 250}, {})
    client = MlflowClient(tracker.uri)
    tags = client.get_experiment(tracker.experiment_id).tags
    envelope = json.loads(tags[f"mlflow.sharedViewState.tuner-cost-{parent}"])
    assert envelope["name"] == "s: acc against cost" and envelope["createdAt"] > 0
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent}'"  # the trials
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`acc`", True)  # best first
    assert state["runsHiddenMode"] == "SHOW_ALL"  # every trial, not the UI's first ten
    (chart,) = state["compareRunCharts"]
    assert chart["type"] == "SCATTER" and chart["runsCountToCompare"] == 250
    assert chart["xaxis"] == {"key": "tuner.cost_usd", "type": "METRIC"}
    assert chart["yaxis"] == {"key": "acc", "type": "METRIC"}
    assert chart["metricSectionId"] == state["compareRunSections"][0]["uuid"]

    exp = tracker.experiment_id
    runs = f"http://127.0.0.1:5000/#/experiments/{exp}/runs?workflowType=machine_learning"
    cost = f"{runs}&compareRunsMode=CHART&viewStateShareKey=tuner-cost-{parent}"
    assert tracker.urls(parent) == {"runs": runs, "cost": cost}
    assert study_urls(tracker.uri, parent) == {"runs": runs, "cost": cost}  # read back
    note = client.get_run(parent).data.tags[NOTE_TAG]
    assert f"]({cost})" in note and f"]({runs})" in note


def test_a_server_store_links_to_itself_without_its_credentials():
    assert ui_address("sqlite:////tmp/mlflow.db") == "http://127.0.0.1:5000"
    assert ui_address("https://bob:pw@mlflow.example.com/prefix/") == \
        "https://mlflow.example.com/prefix"
    assert runs_url("http://h:5001", "7") == \
        "http://h:5001/#/experiments/7/runs?workflowType=machine_learning"
    assert cost_view_url("http://h:5001", "7", "abc").endswith(
        "&compareRunsMode=CHART&viewStateShareKey=tuner-cost-abc")


def test_a_store_that_cannot_be_read_gives_no_links_and_no_error(store):
    assert study_urls(store, "no-such-run") == {}
    assert study_urls("http://127.0.0.1:9/", "r") == {}  # nothing listens on port 9


# --- 4. dollars people can read -----------------------------------------------------------------

@pytest.mark.parametrize("usd,text", [
    (8.197e-05, "$0.00008197"), (0.0002315, "$0.0002315"), (0.01234, "$0.01234"),
    (0.5, "$0.5000"), (1234.5, "$1,234.50"), (0.0, "$0"), (float("nan"), "-")])
def test_money_is_plain_decimals_never_scientific(usd, text):
    assert money(usd) == text


@pytest.mark.parametrize("usd,text", [(0.0, "$0"), (2.5e-05, "$0.000025"),
                                      (0.0001, "$0.0001"), (0.015, "$0.015"), (2.0, "$2.00")])
def test_axis_ticks_are_dollars_without_trailing_zeros(usd, text):
    assert _tick(usd) == text


def _result(tmp_path) -> TuneResult:
    record = StudyRecord.create(
        str(tmp_path / "study"), name="s", metric="acc", mode="max", num_samples=4,
        mlflow_uri="sqlite:///unused.db", mlflow_experiment="s", parent_run_id="p1", settings={})
    for tid, status, acc, usd, market in [
            ("cheap", "pruned", 0.3, 1.2e-06, "spot"), ("mid", "completed", 0.9, 8.197e-05, "spot"),
            ("best", "completed", 0.95, 0.000412, "on-demand"),
            ("worse", "completed", 0.5, 0.0003, "on-demand")]:
        record.trials[tid] = TrialEntry(tid, TrialStatus(status), metric=acc, iterations=3,
                                        cost_usd=usd, market=market)
    record.cost = {"cost_usd": 0.000795, "wasted_usd": 0.0, "idle_usd": 2e-05,
                   "cluster_usd": 0.000815, "on_demand_equiv_usd": 0.0011, "savings_pct": 27.7}
    record.save()
    return TuneResult.load(record.path)


def test_the_table_and_the_progress_line_write_dollars_readably(tmp_path):
    result = _result(tmp_path)
    table = format_table(result)
    assert "$0.00008197" in table and "$0.0004120" in table
    assert not re.search(r"\de-\d", table)
    record = StudyRecord.load(result.path)
    lines: list[str] = []
    _Progress(record, emit=lines.append).show()
    assert lines and lines[-1].endswith("| $0.0007950 spent")


def test_the_progress_line_calls_a_trial_best_only_once_it_ran_to_max_t(tmp_path):
    """Before any trial completes, the lead is a partly trained trial's latest value (it may
    not last: a completed trial with less can take over), and the line says how far it got."""
    record = StudyRecord.create(
        str(tmp_path / "study"), name="s", metric="acc", mode="max", num_samples=4, max_t=30,
        mlflow_uri="sqlite:///unused.db", mlflow_experiment="s", parent_run_id="p1", settings={})
    record.trials["fast"] = TrialEntry("fast", TrialStatus.RUNNING, metric=0.948, iterations=12)
    lines: list[str] = []
    progress = _Progress(record, emit=lines.append)
    progress.show()
    record.trials["first"] = TrialEntry("first", TrialStatus.COMPLETED, metric=0.161,
                                        iterations=30)
    progress.show()
    assert lines[0].endswith("| leading acc=0.948 (fast at 12 of 30 iterations)")
    assert lines[1].endswith("| best acc=0.161 (first)")


def test_the_study_description_is_the_pareto_set_with_the_links(tmp_path):
    note = pareto_note(_result(tmp_path), {"cost": "http://u/cost", "runs": "http://u/runs"})
    assert "[acc against cost (chart)](http://u/cost)" in note and "(http://u/runs)" in note
    rows = [line for line in note.splitlines() if line.startswith("| ")]
    assert rows[0] == "| trial | acc | dollars | market | status |"
    assert rows[1:] == ["| mid | 0.9 | $0.00008197 | spot | completed |",  # not the pruned
                        "| best (best) | 0.95 | $0.0004120 | on-demand | completed |"]
    assert not re.search(r"\de-\d", note)


def test_the_pareto_plot_has_dollar_ticks_a_labelled_best_and_markets_apart(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read it back
    path = plot_pareto(_result(tmp_path), str(tmp_path / "pareto.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    (ax,) = figures[0].axes
    figures[0].canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\$\d[\d,]*(\.\d+)?", t) for t in ticks), ticks
    assert any("best: best" in t.get_text() and "$0.0004120" in t.get_text() for t in ax.texts)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"spot (2)", "on-demand (2)", "completed (3)", "pruned (1)"} <= set(legend)
    colors = {tuple(c) for coll in ax.collections for c in coll.get_facecolors()}
    assert len(colors) >= 2  # spot and on-demand points differ in colour
    plt.close(figures[0])


def test_a_trial_without_a_market_is_grey_in_the_plot_and_a_dash_in_the_note(tmp_path):
    result = _result(tmp_path)
    trials = result.trials.copy()
    trials.loc[trials.trial_id == "best", "market"] = None
    odd = TuneResult(**{**result.__dict__, "trials": pd.DataFrame(trials)})
    assert plot_pareto(odd, str(tmp_path / "p.png"))
    assert "| best (best) | 0.95 | $0.0004120 | - | completed |" in pareto_note(odd, {})


# --- 5. optuna-dashboard, one command away ---------------------------------------------------

def _journal_study(tmp_path):
    record = StudyRecord.create(
        str(tmp_path / "study"), name="s", metric="acc", mode="max", num_samples=1,
        mlflow_uri="sqlite:///unused.db", mlflow_experiment="s", parent_run_id="p1",
        settings={}, optuna_storage=str(tmp_path / "study" / "optuna_journal.log"))
    record.save()
    return record


def test_the_dashboard_without_optuna_dashboard_says_how_to_install_it(tmp_path, capsys,
                                                                       monkeypatch):
    import importlib.util

    from tuner.cli import main

    record = _journal_study(tmp_path)
    assert main(["dashboard", record.path]) == 1  # no journal yet
    assert "no Optuna journal" in capsys.readouterr().err
    open(record.optuna_storage, "w").close()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna_dashboard" else real(name, *a))
    assert main(["dashboard", record.path]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "optuna-dashboard is not installed" in err and "pip install" in err


def test_the_dashboard_serves_the_journal_with_the_metric_named(tmp_path, capsys, monkeypatch):
    import optuna
    import optuna_dashboard
    from optuna.storages.journal import JournalFileBackend

    from tuner.cli import main

    record = _journal_study(tmp_path)
    storage = optuna.storages.JournalStorage(JournalFileBackend(record.optuna_storage))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    trial.report(0.1, 1)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    served = []
    monkeypatch.setattr(optuna_dashboard, "run_server",
                        lambda storage, host, port: served.append((storage, host, port)))
    assert main(["dashboard", record.path, "--port", "8099"]) == 0
    assert "http://127.0.0.1:8099/" in capsys.readouterr().out
    (seen, host, port) = served[0]
    assert (host, port) == ("127.0.0.1", 8099)
    loaded = optuna.load_study(study_name="s", storage=seen)
    assert loaded.metric_names == ["acc"]
    assert loaded.trials[0].state == optuna.trial.TrialState.PRUNED
    assert loaded.trials[0].intermediate_values == {1: 0.1}
