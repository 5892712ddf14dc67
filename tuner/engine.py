"""Ray Tune, at the edge: the one module that imports ``ray.tune``.

It wires a study as Ray Tune runs it -- ``OptunaSearch`` (TPE, study persisted in
an Optuna journal file), ``ASHAScheduler``, failure retries, checkpoints -- and
adds what Ray's integration lacks:

* a trial stopped early by ASHA is told to Optuna as PRUNED with its intermediate
  values (Ray tells it COMPLETE with a truncated value, which misleads TPE);
* ASHA's rungs are saved with the experiment, so a resumed study keeps them;
* every trial's progress goes to the study record and to MLflow as it happens.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune import Callback, Checkpoint, CheckpointConfig, FailureConfig, RunConfig
from ray.tune import TuneConfig, Tuner
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from tuner import ray_compat
from tuner.config import RESERVED_PREFIX, StudySettings
from tuner.errors import StudyError, TunerError
from tuner.record import OPTUNA_JOURNAL, TrialStatus
from tuner.search_space import SearchSpace
from tuner.study import StudyBook

ITERATION = "training_iteration"
NODE_ID = "node_id"
BUSY_S = "node_busy_s"
# Keys Ray Tune adds to every result; everything else is the trainable's own metrics.
_RAY_KEYS = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "date", "pid",
    "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "done",
    "trial_id", "experiment_id", "experiment_tag", "config", "checkpoint_dir_name",
    "should_checkpoint", "node_id", "node_busy_s", "episodes_total", "timesteps_total", "timesteps_since_restore",
}


# --- inside a trial -----------------------------------------------------------------------

def report(metrics: dict[str, Any], checkpoint_directory: str | None = None) -> None:
    """``tune.report``, with an optional checkpoint directory to persist."""
    checkpoint = Checkpoint.from_directory(checkpoint_directory) if checkpoint_directory else None
    tune.report(metrics, checkpoint=checkpoint)


def get_checkpoint() -> Checkpoint | None:
    return tune.get_checkpoint()


def current_trial_id() -> str:
    return tune.get_context().get_trial_id() or "local"


def node_is_draining() -> bool:
    """Whether this worker's node is being drained (a spot notice: checkpoint now)."""
    return ray.get_runtime_context().get_node_id() in ray_compat.draining_node_ids()


# --- the study's pieces --------------------------------------------------------------------

class _Asha(AsyncHyperBandScheduler):
    """ASHA that remembers which trials it stopped before ``max_t`` (pruned)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ray_compat.require_fields(self, ray_compat.ASHA_FIELDS)
        self.pruned: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:
            self.pruned.add(trial.trial_id)
        return action


class _Search(OptunaSearch):
    """OptunaSearch that records ASHA-stopped trials as PRUNED and checks the metric."""

    def __init__(self, asha: _Asha, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ray_compat.require_fields(self, ray_compat.OPTUNA_SEARCH_FIELDS)
        self._asha = asha
        self._reported: dict[str, int] = {}  # trial id -> last step told to Optuna

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric not in result:
            mine = sorted(k for k in result if _is_user_key(k))
            raise StudyError(
                f"trial {trial_id} reported {mine or 'no metrics'} but not the study's metric "
                f"{self.metric!r}; report it (tune.report({{{self.metric!r}: ...}})) or set "
                f"metric to one of the reported names")
        reserved = sorted(k for k in result if k.startswith(RESERVED_PREFIX))
        if reserved:
            raise StudyError(
                f"trial {trial_id} reported {reserved}: metric names starting with "
                f"`{RESERVED_PREFIX}` are reserved for tuner's own; rename them")
        step = int(result[ITERATION])
        if step <= self._reported.get(trial_id, 0) or trial_id in self._completed_trials:
            return  # a re-run iteration after a restore: Optuna already has this step
        if trial_id not in self._ot_trials:
            self._adopt(trial_id, result)
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Optuna was told of its end just before the driver died (after Tune's snapshot).
            self._completed_trials.add(trial_id)
            return
        self._reported[trial_id] = step

    def _adopt(self, trial_id: str, result: dict) -> None:
        """A trial Tune restored that this searcher's snapshot predates: the driver died
        between the two saves. Give it an Optuna trial with the same parameters."""
        params = {k[len("config/"):]: v for k, v in result.items() if k.startswith("config/")}
        self._ot_study.enqueue_trial(params, skip_if_exists=False)
        ot_trial = self._ot_study.ask()
        self._suggest_from_define_by_run_func(self._space, ot_trial)
        self._ot_trials[trial_id] = ot_trial

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._ot_trials:  # restored, never reported again: nothing to tell
            if result and self.metric in result:
                self._adopt(trial_id, result)
            else:
                self._completed_trials.add(trial_id)
                return
        if error or trial_id not in self._asha.pruned or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        ot_trial = self._ot_trials[trial_id]
        if result and self.metric in result:  # the result that triggered the stop
            step = int(result[ITERATION])
            if step > self._reported.get(trial_id, 0):
                ot_trial.report(result[self.metric], step)
        try:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:  # told before the driver restarted
            pass
        self._completed_trials.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        asha, self._asha = self._asha, None
        try:
            super().save(checkpoint_path)
        finally:
            self._asha = asha

    def restore(self, checkpoint_path: str) -> None:
        asha = self._asha
        super().restore(checkpoint_path)
        self._asha = asha
        # Trials asked after the last experiment checkpoint died with the driver: say so.
        known = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False,
                                                states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in known:
                self._ot_study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)


_BOOKS: dict[str, StudyBook] = {}  # experiment dir -> the driver's live bookkeeping


class _StudyCallback(Callback):
    """Feeds Tune's events to the study's :class:`StudyBook`; saves ASHA with the experiment.

    Ray pickles this object with the experiment and may restore more than one copy
    (the stopper holds one), so the live bookkeeping sits in ``_BOOKS``, one per study.
    """

    def __init__(self, experiment_dir: str, asha: _Asha, verbose: bool) -> None:
        self._dir, self._asha, self._verbose = experiment_dir, asha, verbose
        self._nodes_polled = 0.0

    @property
    def book(self) -> StudyBook:
        if self._dir not in _BOOKS:
            _BOOKS[self._dir] = StudyBook(self._dir, verbose=self._verbose)
        return _BOOKS[self._dir]

    def setup(self, **info: Any) -> None:
        _BOOKS.pop(self._dir, None)
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

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if self.book.finished(trial.trial_id):
            return  # restarted from a stale snapshot; the stopper ends it
        node_id = result.get(NODE_ID)
        if node_id and not self.book.knows_node(node_id):
            self._poll_nodes(force=True)
        self.book.trial_result(trial.trial_id, int(result.get(ITERATION, 0)),
                               user_metrics(result), node_id,
                               float(result.get(BUSY_S, result.get("time_this_iter_s")) or 0.0))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pruned = trial.trial_id in self._asha.pruned
        self.book.trial_ended(trial.trial_id, TrialStatus.PRUNED if pruned else TrialStatus.COMPLETED)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.book.trial_ended(trial.trial_id, TrialStatus.FAILED, _error_line(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._poll_nodes(force=True)
        self.book.experiment_ended([t.trial_id for t in trials])

    def _poll_nodes(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._nodes_polled > 2.0:
            self.book.nodes_seen(ray.nodes())
            self._nodes_polled = now


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


class _NodeIdMixin:
    """Adds to each result the Ray node the trial runs on and the seconds it held its
    resources since the previous result (wall time on the worker, pauses included), so
    the driver can price it."""

    def setup(self, config: dict) -> Any:
        self._tuner_since = time.time()
        return super().setup(config)  # type: ignore[misc]

    def reset_config(self, new_config: dict) -> bool:
        self._tuner_since = time.time()
        return super().reset_config(new_config)  # type: ignore[misc]

    def get_auto_filled_metrics(self, *args: Any, **kwargs: Any) -> dict:
        metrics = super().get_auto_filled_metrics(*args, **kwargs)  # type: ignore[misc]
        now = time.time()
        metrics[NODE_ID] = ray.get_runtime_context().get_node_id()
        metrics[BUSY_S] = now - getattr(self, "_tuner_since", now)
        self._tuner_since = now
        return metrics


def _with_node_id(trainable: Callable[..., Any]) -> Callable[..., Any]:
    return ray_compat.with_mixins(trainable, _NodeIdMixin)


def user_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The trainable's own numeric metrics from a Tune result."""
    return {k: float(v) for k, v in result.items()
            if _is_user_key(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _is_user_key(key: str) -> bool:
    return key not in _RAY_KEYS and not key.startswith("config/")


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
        return lines[-1][:500] if lines else "error"
    return "error"


# --- running a study ------------------------------------------------------------------------

def connect(address: str | None, labels: Mapping[str, str] | None = None) -> None:
    """Join the Ray cluster at ``address`` (or RAY_ADDRESS, or a running local one), else
    start one on this machine whose node carries ``labels`` (what the cost meter reads)."""
    if ray.is_initialized():
        return
    logging.getLogger("ray").setLevel(logging.WARNING)
    joining = address or os.environ.get("RAY_ADDRESS")
    if joining and joining != "local":
        ray_compat.use_token_if_available()
    options = dict(address=address, logging_level=logging.WARNING, log_to_driver=False,
                   include_dashboard=False if address in (None, "local") else None,
                   configure_logging=True)
    try:
        try:
            ray.init(**options, labels=dict(labels) if labels else None)
        except ValueError as exc:  # joined an existing cluster: its nodes have their own labels
            if "labels must not be provided" not in str(exc):
                raise
            ray.init(**options)
    except ray.exceptions.AuthenticationError:
        raise ray_compat.missing_token(joining or "auto") from None
    except ConnectionError as exc:  # what a token cluster looks like to a driver without one
        if joining and not ray_compat.has_token():
            raise ray_compat.missing_token(joining, maybe=True) from None
        raise StudyError(f"could not join the Ray cluster at {joining}: {exc}; check the "
                         f"address (RAY_ADDRESS) and that the cluster is up") from None


def _local_labels(settings: StudySettings) -> dict[str, str]:
    from tuner.cost.nodes import labels_for

    return labels_for(settings.default_market, settings.default_instance_type, settings.region,
                      launched_at=time.time())


def _quiet() -> None:
    ray_compat.check_env_switches()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # _Search checks it
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3")  # how stale a resume can be  # with verbose=0: no tables
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _ship_by_value(trainable: Callable[..., Any]) -> None:
    """Send the trainable's module with it when workers could not import it by name.

    A module loaded from an experiment's folder (not installed) is on the driver's
    path only; Ray's workers receive its code instead of its name.
    """
    module = sys.modules.get(getattr(trainable, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    if module is not None and path and module.__name__ != "__main__" and \
            "site-packages" not in path and module.__name__.split(".")[0] != "tuner":
        ray.cloudpickle.register_pickle_by_value(module)


def optuna_storage(experiment_dir: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(
        JournalFileBackend(os.path.join(experiment_dir, OPTUNA_JOURNAL)))


def run_study(trainable: Callable[..., Any], space: SearchSpace, settings: StudySettings,
              experiment_dir: str, tune_path: str, verbose: bool = True) -> None:
    """Run a new study whose record already exists in ``experiment_dir``; Tune keeps its
    experiment at ``tune_path`` (the same directory, or a URI such as ``s3://...``)."""
    _quiet()
    connect(settings.ray_address, _local_labels(settings))
    _ship_by_value(trainable)
    asha = _Asha(time_attr=ITERATION, metric=settings.metric, mode=settings.mode,
                 max_t=settings.max_t, grace_period=settings.grace_period,
                 reduction_factor=settings.reduction_factor)
    search = _Search(asha, space=space.suggest, metric=settings.metric, mode=settings.mode,
                     study_name=os.path.basename(experiment_dir),
                     storage=optuna_storage(experiment_dir), seed=settings.seed)
    resources = {k.lower(): v for k, v in settings.resources_per_trial.items()}
    study = _StudyCallback(experiment_dir, asha, verbose)
    tuner = Tuner(
        tune.with_resources(_with_node_id(trainable), resources),
        tune_config=TuneConfig(search_alg=search, scheduler=asha,
                               num_samples=settings.num_samples,
                               max_concurrent_trials=settings.max_concurrent_trials,
                               reuse_actors=True, trial_dirname_creator=_trial_dirname),
        run_config=RunConfig(
            name=os.path.basename(experiment_dir),
            storage_path=tune_path.rsplit("/", 1)[0],
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=settings.checkpoints_to_keep),
            callbacks=[study],
            stop=_StudyStopper(study),
            verbose=0),
    )
    _fit(tuner, experiment_dir, resources, settings.max_concurrent_trials)


def resume_study(trainable: Callable[..., Any], experiment_dir: str, tune_path: str,
                 resources: Mapping[str, float], max_concurrent: int | None,
                 ray_address: str | None = None) -> None:
    """Continue a study whose driver stopped: same trials, Optuna study and MLflow runs."""
    _quiet()
    connect(ray_address)
    _ship_by_value(trainable)
    if not Tuner.can_restore(tune_path):
        raise StudyError(f"{experiment_dir}: Ray Tune saved no experiment state yet (the driver "
                         f"died before its first checkpoint); start the study again with "
                         f"`tuner run`")
    resources = {k.lower(): v for k, v in resources.items()}
    tuner = Tuner.restore(tune_path, tune.with_resources(_with_node_id(trainable), resources),
                          resume_unfinished=True, resume_errored=False)
    _fit(tuner, experiment_dir, resources, max_concurrent)


def trial_slots(cluster: Mapping[str, float], resources: Mapping[str, float]) -> int:
    """How many trials needing ``resources`` (``{"cpu": 1}``) fit in ``cluster``'s totals
    (``ray.cluster_resources()``); at least 1."""
    need = {("CPU" if k == "cpu" else "GPU" if k == "gpu" else k): v
            for k, v in resources.items() if v > 0}
    fits = [int(cluster.get(k, 0) // v) for k, v in need.items()]
    return max(1, min(fits, default=1))


def _fit(tuner: Tuner, experiment_dir: str, resources: Mapping[str, float],
         max_concurrent: int | None) -> None:
    # Tune lets a searcher other than random search have one trial waiting for resources at
    # a time, unless max_concurrent_trials is set: a cluster then fills one actor start at
    # a time, and with actor reuse the first node can take every trial. Let as many wait
    # as the cluster holds now (an autoscaling cluster scales for max_concurrent_trials).
    own = "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ and max_concurrent is None
    if own:
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(
            trial_slots(ray.cluster_resources(), resources))
    try:
        tuner.fit()
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, TunerError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise StudyError(f"the study stopped: {type(exc).__name__}: {exc}; fix the cause, then "
                         f"run `tuner resume {experiment_dir}`") from exc
    finally:
        if own:
            del os.environ["TUNE_MAX_PENDING_TRIALS_PG"]
