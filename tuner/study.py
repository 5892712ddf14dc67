"""The driver's bookkeeping for one study, free of Ray: record, MLflow, cost, budget.

The engine's Tune callback turns Tune events into calls on :class:`StudyBook`; time
and the cluster's node list are passed in, so the same code is driven by tests
without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tuner.config import BUDGET_FIGURES
from tuner.cost.catalog import Market
from tuner.cost.live import study_catalog
from tuner.cost.meter import CostMeter, Peer
from tuner.cost.nodes import launched_at, node_info
from tuner.errors import StudyError
from tuner.record import StudyRecord, TrialEntry, TrialStatus
from tuner.summary import money
from tuner.tracking import Tracker

CLUSTER_PREFIX = "study/"  # keys of the studies' publications in the cluster's shared store


def check_metric(trial_id: str, metric: str, result: Mapping[str, Any]) -> None:
    """Refuse a result whose study metric is there but is not a number (a string, a bool, a
    tensor): ASHA and Optuna compute with it. Called on every result, before they see it."""
    value = result.get(metric)
    if metric in result and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise StudyError(f"trial {trial_id} reported {metric}={value!r:.60} (a "
                         f"{type(value).__name__}); report a number, e.g. "
                         f"tune.report({{{metric!r}: float(...)}})")


class _Progress:
    """One line of study progress at a time, instead of Ray's result tables."""

    def __init__(self, record: StudyRecord, interval_s: float = 15.0,
                 emit: Callable[[str], None] = print) -> None:
        self._record, self._interval, self._emit = record, interval_s, emit
        self._last_line, self._last_time = "", 0.0
        self._last_key: tuple[Any, ...] = ()

    def show(self) -> None:
        c = self._record.counts()
        best = self._record.best()
        finished = c["completed"] + c["pruned"] + c["failed"] + c["stopped"]
        stopped = f", {c['stopped']} stopped at the budget" if c["stopped"] else ""
        line = (f"[tuner] {finished}/{self._record.num_samples} trials done: "
                f"{c['completed']} completed, {c['pruned']} pruned, {c['failed']} failed"
                f"{stopped}; {c['running']} running")
        if best is not None and best.status == TrialStatus.COMPLETED:
            line += f" | best {self._record.metric}={best.metric:.4g} ({best.trial_id})"
        elif best is not None:  # no trial ran to max_t yet: the lead may not last
            of = f" of {self._record.max_t}" if self._record.max_t else ""
            line += (f" | leading {self._record.metric}={best.metric:.4g} ({best.trial_id} at "
                     f"{best.iterations}{of} iterations)")
        cost = self._record.cost.get("cost_usd")
        if cost is not None:
            line += f" | {money(cost)} spent"
        key = (finished, None if best is None else best.trial_id)
        now = time.monotonic()
        if key != self._last_key or (line != self._last_line and
                                     now - self._last_time >= self._interval):
            self._emit(line)
            self._last_key, self._last_line, self._last_time = key, line, now


class StudyBook:
    """Record, MLflow runs, cost meter and budget of one study, kept in step."""

    def __init__(self, path: str, verbose: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.record = StudyRecord.load(path)
        self.tracker = Tracker(self.record.mlflow_uri, self.record.mlflow_experiment)
        self.meter = CostMeter.from_dict(self.record.meter)
        settings = self.record.study_settings()
        self._catalog, self.price_note = study_catalog(settings.prices, settings.region,
                                                       settings.live_prices)
        self._defaults = (settings.default_instance_type, Market(settings.default_market),
                          settings.region)
        resources = settings.resources_per_trial
        self._cpus = float(resources.get("cpu", 1.0))
        self._gpus = float(resources.get("gpu", 0.0))
        self._budget = settings.budget_usd
        self._scope = settings.budget_scope  # "cluster": the bill; "trials": trial dollars
        # what the longest and the dearest iteration took, restored on resume
        self._max_iteration_s, self._max_iteration_usd = \
            self.meter.longest_and_dearest_iteration()
        self._alerts = sorted(settings.budget_alerts)
        self._cost_logged: set[str] = set()  # trials whose cost went to MLflow with a result
        self.record.price_note = self.price_note
        self._clock = clock
        if self.record.bill_since is None:  # the first driver: the bill starts now
            self.record.bill_since = clock()
        self._since = self.record.bill_since
        # A driver before this one stopped watching its nodes at its last save (killed) or
        # at its end; they count again, and new ones from now, as this driver sees them.
        self._started = clock()
        self.meter.stop_watching(float(self.record.meter.get("saved_at", self._started)))
        self._verbose = verbose
        self._progress = _Progress(self.record)
        self._saved = 0.0
        self._warned_unlabelled = False
        if self.record.resumes:
            self._mend_runs()
        if settings.aws_cluster:
            self._tag_cluster(settings.aws_cluster, settings.region)

    def _tag_cluster(self, cluster: str, region: str) -> None:
        """Tag the AWS cluster's instances with this study (a cost-allocation tag), so AWS
        Cost Explorer groups the bill by study; a failure is a warning, not a stop."""
        from tuner.cost.live import STUDY_TAG, tag_study

        try:
            ids = tag_study(cluster, self.record.name, region)
        except Exception as exc:  # no credentials, no permission, throttled
            _warn(f"[tuner] warning: could not tag the instances of cluster {cluster!r} "
                  f"with {STUDY_TAG}={self.record.name} ({type(exc).__name__}: {exc}); "
                  f"the bill will not be grouped by study")
            return
        self._say(f"[tuner] tagged {len(ids)} instances of cluster {cluster!r} with "
                  f"{STUDY_TAG}={self.record.name}")

    def _mend_runs(self) -> None:
        """The MLflow runs of trials that finished before the last driver died, as the record
        has them: that driver's last writes (half a second) may be lost to a kill. A run
        still marked running is ended, a missing one is made, and one without the trial's
        final values (its metric and cost at its last step as recorded) gets them there
        (the steps before are what was written)."""
        parent = self.record.parent_run_id
        runs = self.tracker.trial_runs(parent)
        for trial_id, entry in self.record.trials.items():
            run = runs.get(trial_id)
            final = {self.record.metric: entry.metric, "tuner.cost_usd": entry.cost_usd or None}
            has_final = run is not None and all(
                value is None or _same(run.metrics.get(name), value) for name, value in final.items())
            if (has_final and run is not None and not run.running) or not entry.final:
                continue  # whole; or a trial the resumed study runs, which writes as it goes

            def created(run_id: str, entry: TrialEntry = entry) -> None:
                entry.mlflow_run_id = run_id

            self.tracker.start_trial(parent, self.record.name, trial_id, entry.config,
                                     run_id=run.run_id if run else None, on_created=created)
            if not has_final:
                self.tracker.log_metrics(trial_id, {
                    **({} if entry.metric is None else {self.record.metric: entry.metric}),
                    **self._final_values(entry)}, entry.iterations)
            self.tracker.end_run(trial_id, entry.status.value, self._final_tags(entry),
                                 ended=entry.ended_at)

    # --- nodes and money ---------------------------------------------------------------

    def nodes_seen(self, nodes: Sequence[Mapping[str, Any]]) -> None:
        """Update node lifetimes from a ``ray.nodes()`` listing."""
        now = self._clock()
        alive = set()
        for node in nodes:
            if not node.get("Alive", True):
                self.meter.node_down(node["NodeID"], now)
                continue
            alive.add(node["NodeID"])
            known = self.meter.node(node["NodeID"])
            if known is not None:
                self.meter.node_up(known, now)  # up since this driver started watching it
            else:
                info = node_info(node, self._catalog, *self._defaults)
                if not info.labelled and not self._warned_unlabelled:
                    self._warned_unlabelled = True
                    _warn(f"[tuner] warning: node {info.node_id[:8]} has no tuner.io/ labels; "
                          f"pricing unlabelled nodes as {info.instance_type} "
                          f"{info.market.value} in {info.region} (default_instance_type, "
                          f"default_market, region)")
                # the bill while the study runs: a node up before its driver counts from then
                self.meter.node_up(info, max(launched_at(node) or now, self._started))
        for node_id in self.meter.live_nodes:
            if node_id not in alive:
                self.meter.node_down(node_id, now)
        self.save()  # when this driver last saw its nodes, should it die

    # --- a cluster shared with other studies ---------------------------------------------

    @property
    def cluster_key(self) -> str:
        """This study's key in the cluster's shared store (name and where it lives)."""
        where = hashlib.sha1(os.path.abspath(self.record.path).encode()).hexdigest()[:8]
        return f"{CLUSTER_PREFIX}{self.record.name}-{where}"

    def published(self, ended: bool = False) -> bytes:
        """What the other studies on the cluster need to split its idle time with this one."""
        return json.dumps(self.meter.published(self._since, self._clock(), ended)).encode()

    def peers_seen(self, items: Mapping[str, bytes]) -> None:
        """The other studies' publications (this study's own key is skipped): from now on
        the cluster's idle time is split with those that ran at the time."""
        peers = []
        for key, value in items.items():
            if key == self.cluster_key:
                continue
            try:
                peer = Peer.from_dict(json.loads(value))
            except (ValueError, KeyError, TypeError):
                continue  # a newer release's format, or a torn write: next time
            if peer.until > self._since:
                peers.append(peer)
        self.meter.peers = peers

    def knows_node(self, node_id: str) -> bool:
        return self.meter.node(node_id) is not None

    def holds_node(self, trial_id: str) -> bool:
        """Whether the trial holds a node, as what this study publishes says."""
        return self.meter.holds_node(trial_id)

    def spent(self) -> float:
        """What ``budget_usd`` caps, so far: the cluster's bill since the study started
        (its scope "cluster"), or the trials' dollars (scope "trials")."""
        if self._scope == "cluster":
            return self.meter.cluster_usd(self._clock())
        return float(self.record.cost.get(BUDGET_FIGURES[self._scope], 0.0))

    def _next_iteration_usd(self) -> float:
        """The most the next iteration could add to what the budget caps."""
        if self._scope == "cluster":  # the whole cluster runs on while it does
            return self.meter.cluster_usd_per_second() * self._max_iteration_s
        return self._max_iteration_usd

    def over_budget(self) -> bool:
        """True once the next iteration could take spending past ``budget_usd``."""
        if not self._budget:
            return False
        spent = self.spent()
        if spent + self._next_iteration_usd() < self._budget:
            return False
        if self.record.stop_reason != "budget":
            self.record.stop_reason = "budget"
            self._update_totals()  # its alerts first
            self._say(f"[tuner] budget: {self._scope} {money(spent)} of {money(self._budget)} "
                      f"spent; the next iteration could pass it, so the study stops scheduling "
                      f"work")
            self.tracker.set_tags(self.record.parent_run_id, {"tuner.stop_reason": "budget",
                                                              "tuner.budget_scope": self._scope})
            self.save(force=True)
        return True

    # --- trial events --------------------------------------------------------------------

    def finished(self, trial_id: str) -> bool:
        """Whether the record has this trial's end (it may predate Tune's last snapshot)."""
        entry = self.record.trials.get(trial_id)
        return entry is not None and entry.final

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        fresh = trial_id not in self.record.trials
        entry = self.record.trial(trial_id)
        if not entry.config:  # new, or lost before Tune ever started it (a preempted node)
            entry.config = dict(config)
        if not fresh and not entry.restarting:  # started again by `tuner resume`
            entry.restarts += 1
            entry.restarting = True
        self._track(trial_id, fresh, started=self._clock())
        entry.status = TrialStatus.RUNNING
        self.save()

    def _track(self, trial_id: str, fresh: bool = False, started: float | None = None) -> None:
        """Make sure the tracker writes this trial's run (new, or the recorded one), which
        starts at ``started`` (when Tune started the trial; default: now)."""
        if self.tracker.has_trial(trial_id):
            return
        entry = self.record.trial(trial_id)
        def created(run_id: str) -> None:
            entry.mlflow_run_id = run_id

        self.tracker.start_trial(
            self.record.parent_run_id, self.record.name, trial_id, entry.config,
            run_id=entry.mlflow_run_id, again=not fresh or bool(self.record.resumes),
            on_created=created, started=started)

    def trial_recovering(self, trial_id: str, error: str, failures: int) -> None:
        """The trial was lost and will be retried from its last checkpoint.

        ``failures`` is Ray's failure count: unchanged when the loss was a preemption.
        """
        entry = self.record.trial(trial_id)
        if failures > entry.failures:
            entry.failures = failures
            entry.error = error
        else:
            entry.preemptions += 1
            self._say(f"[tuner] trial {trial_id} preempted; resuming from its last checkpoint")
        entry.restarts += 1
        entry.restarting = True
        self.meter.trial_ended(trial_id)  # it holds no node until it reports again
        self.save(force=True)

    def trial_result(self, trial_id: str, step: int, metrics: Mapping[str, float],
                     node_id: str | None, seconds: float, until: float | None = None) -> None:
        """A reported iteration: it held its node ``seconds`` up to ``until`` (the worker's
        clock; default: now, when the driver hears of it)."""
        entry = self.record.trial(trial_id)
        if entry.restarting:  # the first result since a restart: from which checkpoint?
            entry.restarting = False
            entry.restarted_at.append(step - 1)
        entry.iterations = step
        metric = self.record.metric
        if metric in metrics:
            value = metrics[metric]
            entry.metric = value
            if self.record.improves(value, entry.best_metric):
                entry.best_metric = value
        logged = dict(metrics)
        if node_id is not None and self.knows_node(node_id):
            now = self._clock()
            end = now if until is None else min(float(until), now)  # no later than heard of
            usd = self.meter.charge(trial_id, node_id, step, seconds, end=end,
                                    cpus=self._cpus, gpus=self._gpus)
            self._max_iteration_usd = max(self._max_iteration_usd, usd)
            self._max_iteration_s = max(self._max_iteration_s, seconds)
            cost = self.meter.trials[trial_id]
            info = self.meter.node(node_id)
            assert info is not None  # knows_node
            entry.cost_usd, entry.wasted_usd = cost.cost_usd, cost.wasted_usd
            entry.lost_iterations = cost.lost_iterations
            entry.market, entry.instance_type = info.market.value, info.instance_type
            logged["tuner.cost_usd"] = cost.cost_usd
            self._cost_logged.add(trial_id)
            self._update_totals()
        if metric in metrics:  # what was spent when this value came: the cost to it, if best
            entry.spent_usd = self.record.cost.get("cost_usd", 0.0)
        self._track(trial_id)
        self.tracker.log_metrics(trial_id, logged, step)
        self.save()

    def trial_ended(self, trial_id: str, status: TrialStatus, error: str | None = None) -> None:
        if self.finished(trial_id):
            return
        entry = self.record.trial(trial_id)
        entry.status = status
        entry.ended_at = self._clock()
        self.meter.trial_ended(trial_id)
        if error:
            entry.error = error
        self._track(trial_id)
        totals = self._final_values(entry)
        if trial_id in self._cost_logged:  # its last result logged it, at this step
            del totals["tuner.cost_usd"]
        self.tracker.log_metrics(trial_id, totals, entry.iterations)
        self.tracker.end_run(trial_id, status.value, self._final_tags(entry),
                             ended=entry.ended_at)
        self.save(force=True)

    @staticmethod
    def _final_values(entry: TrialEntry) -> dict[str, float]:
        """What a trial's run gets at its end, at its last step."""
        return {"tuner.cost_usd": entry.cost_usd, "tuner.wasted_usd": entry.wasted_usd,
                "tuner.lost_iterations": float(entry.lost_iterations),
                "tuner.preemptions": float(entry.preemptions)}

    @staticmethod
    def _final_tags(entry: TrialEntry) -> dict[str, Any]:
        return {"tuner.iterations": entry.iterations, "tuner.restarts": entry.restarts,
                "tuner.preempted": str(entry.preemptions > 0).lower(),
                "tuner.market": entry.market or "",
                "tuner.instance_type": entry.instance_type or "",
                **({"tuner.error": entry.error} if entry.error else {})}

    def experiment_ended(self, unfinished: Sequence[str]) -> None:
        """Tune's loop ended with ``unfinished`` trials: stopped for good when the budget
        is spent, else interrupted (Ctrl-C, SIGTERM), for `tuner resume` to continue."""
        cut = (TrialStatus.STOPPED if self.record.stop_reason == "budget"
               else TrialStatus.INTERRUPTED)
        for trial_id in unfinished:
            if trial_id in self.record.trials and not self.finished(trial_id):
                self.trial_ended(trial_id, cut)
        now = self._clock()
        self.meter.stop_watching(now)  # the bill ends with this driver: totals from now on agree
        self._update_totals()
        self.record.idle_by_kind = {k: list(v) for k, v in self.meter.idle_by_kind(now).items()}
        try:
            self.tracker.flush()  # the runs' ids are in the record once it is saved
        except StudyError:
            pass  # not into Tune: flush_all, as the study closes, reports it
        self.save(force=True)

    # --- internals ------------------------------------------------------------------------

    def _update_totals(self) -> None:
        totals = self.meter.totals(now=self._clock())
        key = BUDGET_FIGURES[self._scope]
        before = self.record.cost.get(key, 0.0)
        self.record.cost = totals
        if not self._budget:
            return
        crossed = [pct for pct in self._alerts
                   if before < self._budget * pct / 100 <= totals[key]]
        if crossed:  # one line, however many thresholds one step passed
            also = f"; {', '.join(f'{p:g}%' for p in crossed[:-1])} passed with it" \
                if len(crossed) > 1 else ""
            self._say(f"[tuner] budget alert: {crossed[-1]:g}% of {money(self._budget)} spent "
                      f"({self._scope} {money(totals[key])}{also})")
        for pct in crossed:
            self.record.budget_alerts.append(pct)
            self.tracker.log_metrics(self.record.parent_run_id,
                                     {"tuner.budget_used_pct": float(pct)}, 0)

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._saved > 1.0:
            self.record.meter = {**self.meter.to_dict(), "saved_at": self._clock()}
            self.record.save()
            self._saved = now
        if self._verbose:
            self._progress.show()

    def _say(self, line: str) -> None:
        if self._verbose:
            print(line, flush=True)


def _warn(line: str) -> None:
    """A warning: on stderr, and quiet or not (``verbose`` silences progress only)."""
    print(line, file=sys.stderr, flush=True)


def _same(logged: float | None, recorded: float) -> bool:
    """Whether MLflow's value is the record's (NaN is NaN)."""
    if logged is None:
        return False
    return (math.isnan(logged) and math.isnan(recorded)) or math.isclose(logged, recorded, rel_tol=1e-9)
