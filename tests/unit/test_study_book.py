"""The driver's bookkeeping (StudyBook) driven the way the engine's Tune callback drives it,
without Ray.

Faked: time (a clock the test moves by hand) and the cluster (``ray.nodes()`` entries
written here, labelled as our cluster configs label nodes). Real: the study record on
disk, the shipped price catalog, and MLflow on a local sqlite store (one per module).
"""

from __future__ import annotations

import json
import math

import pytest
from mlflow.tracking import MlflowClient

from tuner.cost.catalog import Market, PriceCatalog
from tuner.record import StudyRecord, TrialStatus
from tuner.result import TuneResult
from tuner.study import StudyBook
from tuner.tracking import Tracker

REGION = "us-east-1"
SPOT_TYPE = "m5.xlarge"  # 4 vCPUs: a 1-CPU trial pays a quarter of the node


class Clock:
    """Unix seconds that move only when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def ray_node(node_id, market="spot", instance_type=SPOT_TYPE, cpus=4.0, alive=True):
    """One entry of ``ray.nodes()`` as a node of our cluster reports it."""
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus},
            "Labels": {"tuner.io/market": market, "tuner.io/instance-type": instance_type,
                       "tuner.io/region": REGION}}


def usd_per_second(instance_type=SPOT_TYPE, market=Market.SPOT, share=0.25):
    """What one trial is charged per second on such a node, from the shipped catalog."""
    return PriceCatalog.load().get(instance_type, REGION).hourly(market) / 3600.0 * share


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite MLflow store shared by this module's tests (each has its own study run)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def make_book(tmp_path, store):
    """``make_book(mode=..., **settings)``: a new study's record and its StudyBook."""
    def make(mode="max", clock=None, **settings):
        parent = Tracker(store, "book-specs").start_study("s", {"metric": "acc"}, {})
        record = StudyRecord.create(
            str(tmp_path / "study"), name="s", metric="acc", mode=mode, num_samples=4,
            mlflow_uri=store, mlflow_experiment="book-specs", parent_run_id=parent,
            settings={"metric": "acc", "mode": mode, **settings})
        return StudyBook(record.path, verbose=False, clock=clock or Clock())
    return make


def run_of(book, trial_id):
    """The trial's MLflow run, once everything queued is written."""
    book.tracker.flush()
    run_id = book.record.trials[trial_id].mlflow_run_id
    assert run_id, f"{trial_id} has no MLflow run"
    return MlflowClient(book.tracker.uri).get_run(run_id)


def report(book, clock, trial_id, step, acc, node="n1", seconds=10.0):
    clock.advance(seconds)
    book.trial_result(trial_id, step, {"acc": acc}, node, seconds)


# --- a trial's life ---------------------------------------------------------------------------

def test_a_completed_trial_is_recorded_with_its_iterations_metric_best_and_cost(make_book):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {"lr": 0.1})
    assert book.record.trials["t1"].status == "running" and not book.finished("t1")
    for step, acc in ((1, 0.5), (2, 0.7), (3, 0.6)):
        report(book, clock, "t1", step, acc)
    book.trial_ended("t1", TrialStatus.COMPLETED)

    entry = StudyRecord.load(book.record.path).trials["t1"]  # what is on disk
    assert entry.status == "completed" and book.finished("t1")
    assert entry.iterations == 3
    assert entry.metric == 0.6 and entry.best_metric == 0.7
    assert entry.config == {"lr": 0.1}
    assert entry.cost_usd > 0
    assert entry.cost_usd == pytest.approx(30.0 * usd_per_second())
    assert (entry.market, entry.instance_type) == ("spot", SPOT_TYPE)
    assert entry.ended_at == clock.now
    assert book.record.cost["cost_usd"] == pytest.approx(entry.cost_usd)
    # the best trial's final value (0.6) came when 30 s had been spent; 0.7 at step 2 is
    # not the study's best: the final value is
    assert TuneResult.from_record(book.record).cost_to_best_usd == pytest.approx(
        30.0 * usd_per_second())

    run = run_of(book, "t1")
    assert run.info.status == "FINISHED"
    assert run.data.tags["tuner.status"] == "completed"
    assert run.data.tags["tuner.iterations"] == "3"
    assert run.data.tags["tuner.market"] == "spot"
    assert run.data.tags["tuner.preempted"] == "false"
    assert run.data.tags["mlflow.parentRunId"] == book.record.parent_run_id
    assert run.data.params == {"lr": "0.1"}
    assert run.data.metrics["acc"] == 0.6
    assert run.data.metrics["tuner.cost_usd"] == pytest.approx(entry.cost_usd)
    history = MlflowClient(book.tracker.uri).get_metric_history(run.info.run_id, "acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.7), (3, 0.6)]


@pytest.mark.parametrize("status,mlflow_status,error", [
    (TrialStatus.PRUNED, "FINISHED", None),
    (TrialStatus.FAILED, "FAILED", "ValueError: boom"),
])
def test_a_pruned_or_failed_trial_ends_its_run_with_the_matching_status(
        make_book, status, mlflow_status, error):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {"lr": 0.1})
    report(book, clock, "t1", 1, 0.4)
    book.trial_ended("t1", status, error)

    entry = StudyRecord.load(book.record.path).trials["t1"]
    assert entry.status == status and entry.error == error
    assert entry.iterations == 1 and entry.cost_usd > 0
    run = run_of(book, "t1")
    assert run.info.status == mlflow_status
    assert run.data.tags["tuner.status"] == status.value


def test_in_mode_min_the_lowest_value_is_the_trials_best_and_nan_never_is(make_book):
    clock = Clock()
    book = make_book(mode="min", clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    for step, loss in ((1, 0.5), (2, 0.3), (3, math.nan), (4, 0.4)):
        report(book, clock, "t1", step, loss)
        if step == 3:
            assert math.isnan(book.record.trials["t1"].metric)  # the last value, as reported
    entry = book.record.trials["t1"]
    assert entry.metric == 0.4 and entry.best_metric == 0.3


def test_a_result_from_a_node_the_book_never_saw_is_recorded_but_not_charged(make_book):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    report(book, clock, "t1", 1, 0.5, node="elsewhere")
    entry = book.record.trials["t1"]
    assert entry.iterations == 1 and entry.metric == 0.5
    assert entry.cost_usd == 0.0 and entry.market is None
    assert "t1" not in book.meter.trials


def test_a_trial_that_finished_is_not_ended_again_by_a_later_event(make_book):
    book = make_book()
    book.trial_started("t1", {})
    book.trial_ended("t1", TrialStatus.COMPLETED)
    book.trial_ended("t1", TrialStatus.FAILED, "late error from a stale snapshot")
    entry = book.record.trials["t1"]
    assert entry.status == "completed" and entry.error is None
    assert run_of(book, "t1").data.tags["tuner.status"] == "completed"


@pytest.mark.parametrize("status", list(TrialStatus))
def test_only_completed_pruned_failed_and_stopped_trials_are_finished(make_book, status):
    book = make_book()
    assert not book.finished("t1")  # not in the record at all
    book.trial_started("t1", {})
    if status is not TrialStatus.RUNNING:
        book.trial_ended("t1", status)
    assert book.record.trials["t1"].status == status
    assert book.finished("t1") == (status.value in {"completed", "pruned", "failed", "stopped"})


# --- the budget ---------------------------------------------------------------------------------
# A trial that takes a whole node, busy from the moment the node is up: the trials' dollars
# and the cluster's bill are the same, so these hold for either budget_scope.

WHOLE_NODE = {"resources_per_trial": {"cpu": 4}}
SCOPES = pytest.mark.parametrize("scope", ["trials", "cluster"])


BUDGET = 0.01


def _budgeted_trial(make_book, scope):
    """A study with a $0.01 budget in ``scope`` and trial t1 started on a whole node, whose
    iterations of the returned ``seconds`` each cost 32% of the budget."""
    clock = Clock()
    book = make_book(clock=clock, budget_usd=BUDGET, budget_scope=scope, **WHOLE_NODE)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    return book, clock, 0.32 * BUDGET / usd_per_second(share=1.0)


@SCOPES
def test_the_study_stops_once_the_next_iteration_could_pass_the_budget(make_book, scope):
    """Each iteration costs 32% of the budget: after two (64%) a third still fits; after
    three (96%) a fourth would pass it."""
    book, clock, seconds = _budgeted_trial(make_book, scope)
    assert not book.over_budget()
    report(book, clock, "t1", 1, 0.5, seconds=seconds)
    assert not book.over_budget()
    report(book, clock, "t1", 2, 0.6, seconds=seconds)
    assert not book.over_budget()
    assert book.record.stop_reason is None

    report(book, clock, "t1", 3, 0.7, seconds=seconds)
    assert book.over_budget()
    assert book.record.cost["cost_usd"] < BUDGET  # stops before passing it
    assert book.record.stop_reason == "budget"
    assert StudyRecord.load(book.record.path).stop_reason == "budget"  # saved at once
    assert book.over_budget()  # and stays stopped

    book.tracker.flush()
    parent = MlflowClient(book.tracker.uri).get_run(book.record.parent_run_id)
    assert parent.data.tags["tuner.stop_reason"] == "budget"


def test_a_cluster_budget_counts_the_whole_bill_and_a_trials_budget_only_the_trials(make_book):
    """A 1-CPU trial on a 4-CPU node, and a second node nobody uses: after one iteration
    the trials paid a quarter of one node's time (10% of the budget), the cluster two
    whole nodes' (80%). Alerts at 25%, 50% and 75% follow the same scope."""
    budget = 0.01
    seconds = 0.10 * budget / usd_per_second(share=0.25)
    books = {}
    for scope in ("trials", "cluster"):
        clock = Clock()
        book = books[scope] = make_book(clock=clock, budget_usd=budget, budget_scope=scope,
                                        budget_alerts=[25, 50, 75])
        book.nodes_seen([ray_node("n1"), ray_node("idle")])
        book.trial_started("t1", {})
        report(book, clock, "t1", 1, 0.5, seconds=seconds)
    assert not books["trials"].over_budget()  # 10% spent, 10% more to come
    assert books["cluster"].over_budget()  # 80% spent, the next iteration's 80% won't fit
    assert books["trials"].record.cost["cost_usd"] == pytest.approx(0.10 * budget)
    assert books["cluster"].record.cost["cluster_usd"] == pytest.approx(0.80 * budget)
    assert books["trials"].record.budget_alerts == []
    assert books["cluster"].record.budget_alerts == [25, 50, 75]


def test_two_books_on_one_cluster_hear_each_other_and_split_its_idle_time(make_book, tmp_path):
    """Two studies on the same two 4-CPU nodes from the same moment, each with one 1-CPU
    trial on n1: what each publishes, the other reads (its own key and junk skipped), and
    each pays its quarter of n1 plus half of the rest of the cluster."""
    clock = Clock()
    a = make_book(clock=clock)
    b_record = StudyRecord.load(a.record.path)
    b_record.path, b_record.name, b_record.bill_since = str(tmp_path / "other"), "other", None
    b_record.save()
    b = StudyBook(b_record.path, verbose=False, clock=clock)
    assert a.cluster_key != b.cluster_key
    for book, trial in ((a, "ta"), (b, "tb")):
        book.nodes_seen([ray_node("n1"), ray_node("n2")])
        book.trial_started(trial, {})
    clock.advance(10)
    for book, trial in ((a, "ta"), (b, "tb")):
        book.trial_result(trial, 1, {"acc": 0.5}, "n1", 10.0)
    store = {a.cluster_key: a.published(), b.cluster_key: b.published(), "study/junk": b"{"}
    a.peers_seen(store)
    b.peers_seen(store)
    node_s = usd_per_second(share=1.0)
    for book in (a, b):
        assert book.spent() == pytest.approx(10 * node_s * (0.25 + 0.5 / 2 + 1.0 / 2))
    assert a.spent() + b.spent() == pytest.approx(2 * 10 * node_s)  # the two nodes, 10 s


def test_an_iteration_is_placed_when_the_worker_ended_it_not_when_the_driver_heard(make_book):
    """The driver hears of results late, by a lag that varies (two at once after a pause):
    placed at the driver's time, a trial's back-to-back iterations overlapped, and the
    other studies on the cluster read the wrong busy time. The worker's clock places them;
    a worker clock ahead of the driver's is held to when the driver heard."""
    clock = Clock()
    book = make_book(clock=clock)
    start = clock()
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    clock.advance(25)  # both iterations (0-10 s, 10-20 s) heard of at 25 s
    book.trial_result("t1", 1, {"acc": 0.5}, "n1", 10.0, until=start + 10)
    book.trial_result("t1", 2, {"acc": 0.6}, "n1", 10.0, until=start + 20)
    clock.advance(5)
    book.trial_result("t1", 3, {"acc": 0.7}, "n1", 10.0, until=start + 40)  # a clock ahead
    busy = json.loads(book.published())["busy"]["n1"]
    assert busy == [[pytest.approx(start), pytest.approx(start + 30), 0.25]]  # back to back


def test_without_a_budget_the_study_never_stops_for_money(make_book):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    report(book, clock, "t1", 1, 0.5, seconds=10 * 24 * 3600.0)
    assert book.record.cost["cost_usd"] > 1.0
    assert not book.over_budget() and book.record.stop_reason is None


@SCOPES
def test_each_budget_alert_is_recorded_once_when_spending_crosses_it(make_book, scope):
    """Alerts at 25%, 50% and 100%; iterations of 30% of the budget cross 25% on the first,
    50% on the second, 100% on the fourth."""
    budget = 0.01
    seconds = 0.30 * budget / usd_per_second(share=1.0)
    clock = Clock()
    book = make_book(clock=clock, budget_usd=budget, budget_alerts=[25, 50, 100],
                     budget_scope=scope, **WHOLE_NODE)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    seen = []
    for step in range(1, 6):
        report(book, clock, "t1", step, 0.5, seconds=seconds)
        book.over_budget()
        seen.append(list(book.record.budget_alerts))
    assert seen == [[25], [25, 50], [25, 50], [25, 50, 100], [25, 50, 100]]
    book.experiment_ended(["t1"])  # totals again: no alert twice
    assert StudyRecord.load(book.record.path).budget_alerts == [25, 50, 100]

    history = MlflowClient(book.tracker.uri).get_metric_history(
        book.record.parent_run_id, "tuner.budget_used_pct")
    assert sorted(m.value for m in history) == [25.0, 50.0, 100.0]


def test_thresholds_one_iteration_passes_together_are_said_in_one_line(
        make_book, capsys):
    """One iteration costs 90% of the budget: 50% and 80% pass at once, recorded both, said
    once; the next passes 100%."""
    budget = 0.01
    seconds = 0.90 * budget / usd_per_second(share=1.0)
    clock = Clock()
    book = make_book(clock=clock, budget_usd=budget, budget_scope="trials", **WHOLE_NODE)
    book = StudyBook(book.record.path, verbose=True, clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    capsys.readouterr()
    report(book, clock, "t1", 1, 0.5, seconds=seconds)
    report(book, clock, "t1", 2, 0.5, seconds=seconds)
    alerts = [line for line in capsys.readouterr().out.splitlines() if "budget alert" in line]
    assert alerts == [
        "[tuner] budget alert: 80% of $0.01000 spent (trials $0.009000; 50% passed with it)",
        "[tuner] budget alert: 100% of $0.01000 spent (trials $0.01800)"]
    assert book.record.budget_alerts == [50, 80, 100]


# --- preemptions, failures, restarts ------------------------------------------------------------

def test_a_loss_with_an_unchanged_failure_count_is_a_preemption_not_a_failure(make_book):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    report(book, clock, "t1", 1, 0.5)
    book.trial_recovering("t1", "node n1 was drained", failures=0)

    entry = StudyRecord.load(book.record.path).trials["t1"]  # saved at once
    assert entry.preemptions == 1 and entry.restarts == 1
    assert entry.failures == 0 and entry.error is None


def test_a_loss_that_raises_the_failure_count_is_a_failure_with_its_error(make_book):
    book = make_book()
    book.trial_started("t1", {})
    book.trial_recovering("t1", "RuntimeError: CUDA out of memory", failures=1)

    entry = StudyRecord.load(book.record.path).trials["t1"]
    assert entry.failures == 1 and entry.error == "RuntimeError: CUDA out of memory"
    assert entry.preemptions == 0 and entry.restarts == 1


def test_restarts_count_preemptions_and_failures_alike_and_the_restart_is_counted_once(
        make_book):
    """Tune calls on_trial_start again after each recovery: that start is the same restart."""
    book = make_book()
    book.trial_started("t1", {})
    book.trial_recovering("t1", "drained", failures=0)
    book.trial_started("t1", {})
    book.trial_recovering("t1", "ValueError: boom", failures=1)
    book.trial_started("t1", {})
    book.trial_recovering("t1", "drained again", failures=1)  # count unchanged: preempted
    book.trial_started("t1", {})

    entry = book.record.trials["t1"]
    assert entry.restarts == 3
    assert entry.preemptions == 2 and entry.failures == 1
    assert entry.error == "ValueError: boom"


def test_a_trial_lost_before_it_started_keeps_its_configuration(make_book):
    """A node reclaimed while Tune was still starting a trial there: Tune reports the
    recovery before the trial's first start. The record and the trial's MLflow run still get
    its configuration (they once showed none)."""
    book = make_book()
    book.trial_recovering("t1", "node n1 was drained", failures=0)
    book.trial_started("t1", {"lr": 0.01, "depth": 3})

    entry = book.record.trials["t1"]
    assert entry.config == {"lr": 0.01, "depth": 3}
    assert entry.preemptions == 1 and entry.restarts == 1
    assert run_of(book, "t1").data.params == {"lr": "0.01", "depth": "3"}


def test_an_iteration_run_again_after_a_restart_is_lost_and_its_first_charge_wasted(make_book):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1"), ray_node("n2")])
    book.trial_started("t1", {})
    for step, seconds in ((1, 10.0), (2, 10.0), (3, 40.0)):
        report(book, clock, "t1", step, 0.1 * step, seconds=seconds)
    book.trial_recovering("t1", "node n1 was drained", failures=0)
    book.trial_started("t1", {})
    report(book, clock, "t1", 3, 0.3, node="n2", seconds=10.0)  # from the checkpoint of 2
    report(book, clock, "t1", 4, 0.4, node="n2", seconds=10.0)

    entry = book.record.trials["t1"]
    assert entry.restarted_at == [2]
    assert entry.iterations == 4
    assert entry.lost_iterations == 1
    assert entry.wasted_usd == pytest.approx(40.0 * usd_per_second())  # the first step 3
    assert entry.cost_usd == pytest.approx(80.0 * usd_per_second())  # waste included
    assert book.record.cost["wasted_usd"] == pytest.approx(entry.wasted_usd)

    book.trial_ended("t1", TrialStatus.COMPLETED)
    run = run_of(book, "t1")
    assert run.data.tags["tuner.preempted"] == "true"
    assert run.data.tags["tuner.restarts"] == "1"
    assert run.data.metrics["tuner.preemptions"] == 1
    assert run.data.metrics["tuner.lost_iterations"] == 1
    assert run.data.metrics["tuner.wasted_usd"] == pytest.approx(entry.wasted_usd)


def test_a_trial_started_again_by_resume_counts_one_restart(make_book):
    """A second StudyBook on the same record stands in for the driver of `tuner resume`."""
    clock = Clock()
    book = make_book(clock=clock)
    book.trial_started("t1", {"lr": 0.1})
    report(book, clock, "t1", 1, 0.5, node=None)
    report(book, clock, "t1", 2, 0.6, node=None)
    book.experiment_ended(["t1"])
    run_id = book.record.trials["t1"].mlflow_run_id

    again = StudyBook(book.record.path, verbose=False, clock=clock)
    again.trial_started("t1", {"lr": 0.1})
    report(again, clock, "t1", 3, 0.7, node=None)
    entry = again.record.trials["t1"]
    assert entry.status == "running" and entry.restarts == 1
    assert entry.restarted_at == [2]
    assert entry.config == {"lr": 0.1}
    assert entry.mlflow_run_id == run_id  # the same run, not a new one


def test_resume_writes_to_mlflow_what_a_killed_driver_recorded_but_did_not_write(make_book):
    """Driver 1 started t1, t2 and t3 (their runs written) and recorded their ends, then
    died before MLflow had them (`kill -9` within the writer's half second): t1's run is
    still running without a value, t2's is gone (deleted here), and t3's ended with its
    first step only. Faked: the lost writes (the record's entries are set as the driver set
    them; t2's run is deleted)."""
    clock = Clock()
    book = make_book(clock=clock)
    for trial_id in ("t1", "t2", "t3"):
        book.trial_started(trial_id, {"lr": 0.1})
    book.tracker.log_metrics("t3", {"acc": 0.2, "tuner.cost_usd": 0.001}, 1)
    book.tracker.end_run("t3", "pruned")
    book.tracker.flush()
    client = MlflowClient(book.tracker.uri)
    client.delete_run(book.record.trials["t2"].mlflow_run_id)
    for trial_id, status, acc in (("t1", TrialStatus.COMPLETED, 0.9),
                                  ("t2", TrialStatus.PRUNED, 0.4), ("t3", TrialStatus.PRUNED, 0.5)):
        entry = book.record.trials[trial_id]
        entry.status, entry.iterations, entry.metric, entry.cost_usd = status, 3, acc, 0.002
        entry.ended_at = clock.advance(5)
    book.record.resumes = 1
    book.record.save()

    again = StudyBook(book.record.path, verbose=False, clock=clock)
    for trial_id, acc, steps in (("t1", 0.9, [(3, 0.9)]), ("t2", 0.4, [(3, 0.4)]),
                                 ("t3", 0.5, [(1, 0.2), (3, 0.5)])):
        run = run_of(again, trial_id)
        assert run.info.status == "FINISHED" and run.data.tags["tuner.status"] != "running"
        assert run.data.params == {"lr": "0.1"}
        assert run.data.metrics["acc"] == acc and run.data.metrics["tuner.cost_usd"] == 0.002
        history = client.get_metric_history(run.info.run_id, "acc")
        assert [(m.step, m.value) for m in history] == steps
    children = client.search_runs([again.tracker.experiment_id],
                                  f"tags.mlflow.parentRunId = '{again.record.parent_run_id}'")
    assert sorted(r.data.tags["tuner.trial_id"] for r in children) == ["t1", "t2", "t3"]
    StudyBook(book.record.path, verbose=False, clock=clock).tracker.flush()  # a second resume
    history = client.get_metric_history(run_of(again, "t3").info.run_id, "acc")
    assert [(m.step, m.value) for m in history] == [(1, 0.2), (3, 0.5)]  # nothing written twice


# --- the bill across drivers ---------------------------------------------------------------------

@pytest.mark.parametrize("first_driver", ["ended", "killed"])
@pytest.mark.parametrize("second_cluster", ["a new local cluster", "the same cloud node"])
def test_the_time_between_two_drivers_of_a_study_is_not_on_its_bill(make_book, first_driver,
                                                                     second_cluster):
    """Driver 1 watches node n1 for 100 s, then ends (or is killed: its last save is what
    it last saw); `tuner resume` comes 1000 s later (a second StudyBook on the record) and
    runs 50 s on a new node n2 (the local cluster started again) or on n1 (a cloud node
    that outlived driver 1). The bill is 150 node-seconds either way."""
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    report(book, clock, "t1", 1, 0.5, seconds=100.0)
    if first_driver == "ended":
        book.experiment_ended(["t1"])
    else:
        book.save(force=True)
    clock.advance(1000.0)

    again = StudyBook(book.record.path, verbose=False, clock=clock)
    if second_cluster == "a new local cluster":
        nodes = [ray_node("n1", alive=False), ray_node("n2")]
    else:
        nodes = [ray_node("n1")]
    again.nodes_seen(nodes)
    clock.advance(50.0)
    again.nodes_seen(nodes)
    node_usd_s = usd_per_second(share=1.0)
    assert again.meter.totals(clock())["cluster_usd"] == pytest.approx(150.0 * node_usd_s)
    again.experiment_ended([])
    clock.advance(500.0)  # and none after this driver ended, either
    assert StudyRecord.load(book.record.path).cost["cluster_usd"] == pytest.approx(
        150.0 * node_usd_s)
    assert again.meter.totals(clock())["cluster_usd"] == pytest.approx(150.0 * node_usd_s)


# --- the end of the study ------------------------------------------------------------------------

def test_trials_cut_short_when_the_study_ends_are_interrupted_for_resume_to_continue(make_book):
    clock = Clock()
    book = make_book(clock=clock)
    book.nodes_seen([ray_node("n1")])
    for tid in ("done", "cut"):
        book.trial_started(tid, {})
        report(book, clock, tid, 1, 0.5)
    book.trial_ended("done", TrialStatus.COMPLETED)
    book.experiment_ended(["done", "cut", "never-started"])

    trials = StudyRecord.load(book.record.path).trials
    assert trials["done"].status == "completed"
    assert trials["cut"].status == "interrupted"
    assert "never-started" not in trials
    assert not book.finished("cut")  # `tuner resume` runs it again
    run = run_of(book, "cut")
    assert run.info.status == "KILLED" and run.data.tags["tuner.status"] == "interrupted"


def test_trials_cut_short_after_the_budget_was_spent_are_stopped_for_good(make_book):
    budget = 0.01
    clock = Clock()
    book = make_book(clock=clock, budget_usd=budget, **WHOLE_NODE)
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {})
    report(book, clock, "t1", 1, 0.5, seconds=0.6 * budget / usd_per_second(share=1.0))
    assert book.over_budget()
    book.experiment_ended(["t1"])

    record = StudyRecord.load(book.record.path)
    assert record.trials["t1"].status == "stopped"
    assert record.stop_reason == "budget"
    assert book.finished("t1")
    run = run_of(book, "t1")
    assert run.info.status == "KILLED" and run.data.tags["tuner.status"] == "stopped"


@SCOPES
def test_a_resumed_study_still_knows_what_an_iteration_costs_and_stops_before_the_budget(
        make_book, scope):
    """The driver dies right after a result that left less than one iteration of budget,
    before Tune asked over_budget; a second StudyBook on the record is `tuner resume`'s
    (at the same moment, on the same node)."""
    book, clock, seconds = _budgeted_trial(make_book, scope)
    for step in (1, 2, 3):  # 96% spent: a fourth iteration would pass the budget
        report(book, clock, "t1", step, 0.5, seconds=seconds)
    book.save(force=True)

    again = StudyBook(book.record.path, verbose=False, clock=clock)
    again.nodes_seen([ray_node("n1")])
    assert again.over_budget()


def test_a_trials_cost_goes_to_mlflow_once_a_step(make_book, monkeypatch):
    """Its end adds no second point at its last step (MLflow's store keeps both when their
    times differ by a millisecond; here the writes are counted as the tracker gets them)."""
    clock = Clock()
    book = make_book(clock=clock)
    logged = []
    log = book.tracker.log_metrics
    monkeypatch.setattr(book.tracker, "log_metrics", lambda ref, metrics, step: (
        logged.extend(step for k in metrics if k == "tuner.cost_usd"), log(ref, metrics, step)))
    book.nodes_seen([ray_node("n1")])
    book.trial_started("t1", {"lr": 0.1})
    for step, acc in ((1, 0.5), (2, 0.7)):
        report(book, clock, "t1", step, acc)
    book.trial_ended("t1", TrialStatus.PRUNED)
    book.trial_started("t2", {"lr": 0.2})  # ends before its first result: its cost, 0, once
    book.trial_ended("t2", TrialStatus.FAILED, error="boom")
    assert logged == [1, 2, 0]
