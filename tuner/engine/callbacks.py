"""Tune's events into the study's bookkeeping: the callback that feeds :class:`StudyBook`
(and saves ASHA's rungs with the experiment) and the stopper that ends finished trials and
the study once its budget is spent."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ray
from ray.tune import Callback
from ray.tune.stopper import Stopper

from tuner import ray_compat
from tuner.engine.search import _Asha, _Search, missing_metric, user_metrics
from tuner.engine.trial import BUSY_S, BUSY_UNTIL, ITERATION, NODE_ID
from tuner.record import TrialStatus
from tuner.study import CLUSTER_PREFIX, StudyBook

log = logging.getLogger(__name__)
_BOOKS: dict[str, StudyBook] = {}  # experiment dir -> the driver's live bookkeeping
# experiment dir -> whether this driver prints progress, where Tune restored the callback
# (with the first driver's ``verbose``): set by ``resume_study``
VERBOSE: dict[str, bool] = {}
# experiment dir -> trials whose kept checkpoints this driver has checked (not pickled with
# the callback: a resumed driver checks each trial again)
_CHECKED: dict[str, set[str]] = {}


class _StudyCallback(Callback):
    """Feeds Tune's events to the study's :class:`StudyBook`; saves ASHA with the experiment.

    Ray pickles this object with the experiment and may restore more than one copy
    (the stopper holds one), so the live bookkeeping sits in ``_BOOKS``, one per study.
    """

    def __init__(self, experiment_dir: str, asha: _Asha, verbose: bool,
                 search: _Search | None = None) -> None:
        self._dir, self._asha, self._verbose = experiment_dir, asha, verbose
        self._search = search
        self._nodes_polled = 0.0
        self._share_failed = False

    @property
    def book(self) -> StudyBook:
        if self._dir not in _BOOKS:
            _BOOKS[self._dir] = StudyBook(self._dir, verbose=VERBOSE.get(self._dir, self._verbose))
        return _BOOKS[self._dir]

    def setup(self, stop: Any = None, num_samples: Any = None, total_num_samples: Any = None,
              **info: Any) -> None:
        _BOOKS.pop(self._dir, None)
        _CHECKED.pop(self._dir, None)
        self._poll_nodes(force=True)

    def get_state(self) -> dict:
        return {"asha": dict(self._asha.__dict__)}

    def set_state(self, state: dict) -> None:
        self._asha.__dict__.update(state["asha"])

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._poll_nodes()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not self.book.finished(trial.trial_id):
            self.book.trial_started(trial.trial_id, trial.config)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Ray does not count a loss to a drained (preempted) node as a failure.
        self.book.trial_recovering(trial.trial_id, _error_line(trial),
                                   failures=trial.run_metadata.num_failures)
        self._share_cluster()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any,
                      **info: Any) -> None:
        # Tune calls this before it registers the checkpoint (and deletes the ones past
        # num_to_keep): a resumed trial's first one, drop those its killed driver deleted
        checked = _CHECKED.setdefault(self._dir, set())
        if trial.trial_id not in checked:
            checked.add(trial.trial_id)
            for path in ray_compat.forget_deleted_checkpoints(trial):
                log.debug("trial %s: checkpoint %s was deleted after the experiment's "
                          "snapshot; forgotten", trial.trial_id, path)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if self.book.finished(trial.trial_id):
            return  # restarted from a stale snapshot; the stopper ends it
        node_id = result.get(NODE_ID)
        if node_id and not self.book.knows_node(node_id):
            self._poll_nodes(force=True)
        held = self.book.holds_node(trial.trial_id)
        self.book.trial_result(trial.trial_id, int(result.get(ITERATION, 0)),
                               user_metrics(result), node_id,
                               float(result.get(BUSY_S, result.get("time_this_iter_s")) or 0.0),
                               until=result.get(BUSY_UNTIL))
        if not held and self.book.holds_node(trial.trial_id):
            self._share_cluster()  # what it holds changed: tell the other studies now
        if self.book.record.metric not in result:  # its iteration and cost recorded first
            self.book.record.stop_reason = "metric"  # `tuner report` says why, resume clears it
            self.book.save(force=True)
            raise missing_metric(trial.trial_id, self.book.record.metric, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pruned = trial.trial_id in self._asha.pruned
        self.book.trial_ended(trial.trial_id, TrialStatus.PRUNED if pruned else TrialStatus.COMPLETED)
        self._share_cluster()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.book.trial_ended(trial.trial_id, TrialStatus.FAILED, _error_line(trial))
        self._share_cluster()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._poll_nodes(force=True)
        self.book.experiment_ended([t.trial_id for t in trials])
        search = getattr(self, "_search", None)  # None in a study pickled before it was kept
        if search is not None and self.book.record.stop_reason == "budget":
            search.end_unfinished()
        self._share_cluster(ended=True)

    def _poll_nodes(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._nodes_polled > 2.0:
            self.book.nodes_seen(ray.nodes())
            self._share_cluster()
            self._nodes_polled = now

    def _share_cluster(self, ended: bool = False) -> None:
        """Tell the other studies on this cluster what this one holds, and hear theirs
        (through the GCS's key-value store), so each pays its share of the idle time."""
        try:
            ray_compat.cluster_kv_put(self.book.cluster_key, self.book.published(ended))
            if not ended:
                self.book.peers_seen(ray_compat.cluster_kv_items(CLUSTER_PREFIX))
        except ray_compat.RayCompatError:
            raise
        except Exception as exc:  # the GCS busy or restarting: the next poll tries again
            if not getattr(self, "_share_failed", False):  # shares may be off until it answers
                self._share_failed = True
                log.warning("could not exchange cluster shares with other studies (%s: %s); "
                            "trying again at each poll", type(exc).__name__, exc)


class _StudyStopper(Stopper):
    """Ends trials the record says had finished, and the study when the budget is spent.

    Tune snapshots its experiment every few seconds; a trial that ended after the last
    snapshot is started again on resume. Its first result ends it, and the record,
    Optuna and MLflow keep the outcome they already have.
    """

    def __init__(self, study: _StudyCallback) -> None:
        self._study = study

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self._study.book.finished(trial_id)

    def stop_all(self) -> bool:
        return self._study.book.over_budget()


def _error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
        return lines[-1][:500] if lines else "error"
    return "error"
