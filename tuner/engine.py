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

from tuner.config import RESERVED_PREFIX, StudySettings
from tuner.errors import StudyError, TunerError
from tuner.record import OPTUNA_JOURNAL, StudyRecord, TrialStatus
from tuner.search_space import SearchSpace
from tuner.tracking import Tracker

ITERATION = "training_iteration"
# Keys Ray Tune adds to every result; everything else is the trainable's own metrics.
_RAY_KEYS = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "date", "pid",
    "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "done",
    "trial_id", "experiment_id", "experiment_tag", "config", "checkpoint_dir_name",
    "should_checkpoint", "episodes_total", "timesteps_total", "timesteps_since_restore",
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


# --- the study's pieces --------------------------------------------------------------------

class _Asha(AsyncHyperBandScheduler):
    """ASHA that remembers which trials it stopped before ``max_t`` (pruned)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
        self._asha = asha
        self._reported: dict[str, int] = {}  # trial id -> last step told to Optuna

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric not in result:
            mine = sorted(k for k in result if _is_user_key(k))
            raise StudyError(
                f"trial {trial_id} reported {mine or 'no metrics'} but not the study's metric "
                f"{self.metric!r}; report it (tune.report({{{self.metric!r}: ...}})) or set "
                f"metric to one of the reported names")
        step = int(result[ITERATION])
        if step <= self._reported.get(trial_id, 0) or trial_id in self._completed_trials:
            return  # a re-run iteration after a restore: Optuna already has this step
        super().on_trial_result(trial_id, result)
        self._reported[trial_id] = step

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
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
        except RuntimeError:  # told before the driver restarted
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


class _Progress:
    """One line of study progress at a time, instead of Ray's result tables."""

    def __init__(self, record: StudyRecord, total: int, interval_s: float = 15.0) -> None:
        self._record, self._total, self._interval = record, total, interval_s
        self._last_line, self._last_time = "", 0.0
        self._last_key: tuple = ()

    def show(self) -> None:
        c = self._record.counts()
        best = self._record.best()
        finished = c["completed"] + c["pruned"] + c["failed"] + c["stopped"]
        line = (f"[tuner] {finished}/{self._total} trials done: {c['completed']} completed, "
                f"{c['pruned']} pruned, {c['failed']} failed; {c['running']} running")
        if best is not None:
            line += f" | best {self._record.data['metric']}={best['metric']:.4g} ({best['trial_id']})"
        key = (finished, None if best is None else best["trial_id"])
        now = time.monotonic()
        if key != self._last_key or (line != self._last_line and
                                     now - self._last_time >= self._interval):
            print(line, flush=True)
            self._last_key, self._last_line, self._last_time = key, line, now


class _StudyCallback(Callback):
    """Keeps the study record and MLflow in step with Tune; saves ASHA with the experiment.

    Live objects (tracker, record) are made in ``setup`` so that the copy Ray pickles
    with the experiment comes back to life on ``Tuner.restore``.
    """

    def __init__(self, experiment_dir: str, asha: _Asha, verbose: bool) -> None:
        self._dir, self._asha, self._verbose = experiment_dir, asha, verbose
        self._live: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_live": {}}

    def setup(self, **info: Any) -> None:
        record = StudyRecord.load(self._dir)
        tracker = Tracker(record.data["mlflow_uri"], record.data["mlflow_experiment"])
        self._live = {"record": record, "tracker": tracker, "saved": 0.0,
                      "progress": _Progress(record, record.data["num_samples"])}

    @property
    def record(self) -> StudyRecord:
        if not self._live:  # a copy Ray restored without calling setup (the stopper's)
            self.setup()
        return self._live["record"]

    @property
    def tracker(self) -> Tracker:
        if not self._live:
            self.setup()
        return self._live["tracker"]

    def get_state(self) -> dict:
        return {"asha": dict(self._asha.__dict__)}

    def set_state(self, state: dict) -> None:
        self._asha.__dict__.update(state["asha"])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.finished(trial.trial_id):
            return
        entry = self.record.trial(trial.trial_id)
        if entry["mlflow_run_id"] is None:
            entry["config"] = dict(trial.config)
            entry["mlflow_run_id"] = self.tracker.start_trial(
                self.record.data["parent_run_id"], self.record.data["name"], trial.trial_id,
                trial.config)
        elif not entry.get("restarting"):  # started again by `tuner resume`
            entry["restarts"] += 1
            entry["restarting"] = True
        entry["status"] = TrialStatus.RUNNING.value
        self._save(force=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The trial failed and will be retried from its last checkpoint."""
        entry = self.record.trial(trial.trial_id)
        entry["error"] = _error_line(trial)
        entry["restarts"] += 1
        entry["restarting"] = True
        self._save(force=True)

    def finished(self, trial_id: str) -> bool:
        """Whether the record has this trial's end (it may predate Tune's last snapshot)."""
        entry = self.record.trials.get(trial_id)
        return entry is not None and entry["status"] != TrialStatus.RUNNING.value

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if self.finished(trial.trial_id):
            return  # restarted from a stale snapshot; _FinishedStopper ends it
        entry = self.record.trial(trial.trial_id)
        step = int(result.get(ITERATION, 0))
        if entry.pop("restarting", False):  # first result since a restart: which checkpoint?
            entry["restarted_at"].append(step - 1)
        entry["iterations"] = step
        metrics = user_metrics(result)
        metric = self.record.data["metric"]
        if metric in metrics:
            value = metrics[metric]
            entry["metric"] = value
            sign = 1 if self.record.data["mode"] == "max" else -1
            if entry["best_metric"] is None or sign * value > sign * entry["best_metric"]:
                entry["best_metric"] = value
        self.tracker.log_metrics(entry["mlflow_run_id"], metrics, step)
        self._save()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        status = TrialStatus.PRUNED if trial.trial_id in self._asha.pruned else TrialStatus.COMPLETED
        self._end(trial, status)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.record.trial(trial.trial_id)["error"] = _error_line(trial)
        self._end(trial, TrialStatus.FAILED)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in trials:
            entry = self.record.trials.get(trial.trial_id)
            if entry and entry["status"] == TrialStatus.RUNNING.value:
                self._end(trial, TrialStatus.STOPPED)
        self._save(force=True)

    def _end(self, trial: Any, status: TrialStatus) -> None:
        if self.finished(trial.trial_id):
            return
        entry = self.record.trial(trial.trial_id)
        entry["status"] = status.value
        entry["ended_at"] = time.time()
        if entry["mlflow_run_id"]:
            self.tracker.end_run(entry["mlflow_run_id"], status.value,
                                 {"tuner.iterations": entry["iterations"],
                                  "tuner.restarts": entry["restarts"]})
        self._save(force=True)

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._live["saved"] > 1.0:
            self.record.save()
            self._live["saved"] = now
        if self._verbose:
            self._live["progress"].show()


class _FinishedStopper(Stopper):
    """Stops a trial the study record says had finished before the driver restarted.

    Tune snapshots its experiment every few seconds; a trial that ended after the last
    snapshot is started again on resume. Its first result ends it, and the record,
    Optuna and MLflow keep the outcome they already have.
    """

    def __init__(self, study: _StudyCallback) -> None:
        self._study = study

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self._study.finished(trial_id)

    def stop_all(self) -> bool:
        return False


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

def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (or RAY_ADDRESS, or a running local one), else start one."""
    if ray.is_initialized():
        return
    logging.getLogger("ray").setLevel(logging.WARNING)
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
             include_dashboard=False if address in (None, "local") else None,
             configure_logging=True)


def _quiet() -> None:
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
              experiment_dir: str, verbose: bool = True) -> None:
    """Run a new study whose record already exists in ``experiment_dir``."""
    _quiet()
    connect(settings.ray_address)
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
        tune.with_resources(trainable, resources),
        tune_config=TuneConfig(search_alg=search, scheduler=asha,
                               num_samples=settings.num_samples,
                               max_concurrent_trials=settings.max_concurrent_trials,
                               reuse_actors=True, trial_dirname_creator=_trial_dirname),
        run_config=RunConfig(
            name=os.path.basename(experiment_dir),
            storage_path=os.path.dirname(experiment_dir),
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=settings.checkpoints_to_keep),
            callbacks=[study],
            stop=_FinishedStopper(study),
            verbose=0),
    )
    _fit(tuner, experiment_dir)


def resume_study(trainable: Callable[..., Any], experiment_dir: str, resources: Mapping[str, float],
                 ray_address: str | None = None) -> None:
    """Continue a study whose driver stopped: same trials, Optuna study and MLflow runs."""
    _quiet()
    connect(ray_address)
    _ship_by_value(trainable)
    if not Tuner.can_restore(experiment_dir):
        raise StudyError(f"{experiment_dir}: Ray Tune saved no experiment state yet (the driver "
                         f"died before its first checkpoint); start the study again with "
                         f"`tuner run`")
    resources = {k.lower(): v for k, v in resources.items()}
    tuner = Tuner.restore(experiment_dir, tune.with_resources(trainable, resources),
                          resume_unfinished=True, resume_errored=False)
    _fit(tuner, experiment_dir)


def _fit(tuner: Tuner, experiment_dir: str) -> None:
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
