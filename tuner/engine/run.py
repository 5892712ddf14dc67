"""Running a study on Ray Tune: joining (or starting) the cluster, building the Tuner from
the study's settings, fitting it, and continuing it after the driver stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

from tuner import ray_compat
from tuner.config import StudySettings
from tuner.engine.callbacks import _BOOKS, _CHECKED, VERBOSE, _StudyCallback, _StudyStopper
from tuner.engine.search import _Asha, _Search, optuna_storage, tpe_sampler
from tuner.engine.trial import ITERATION, with_trial_mixin
from tuner.errors import ConfigError, StudyError, TunerError
from tuner.search_space import SearchSpace


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def check_address(address: str | None) -> None:
    """Fail in seconds when nothing listens at the cluster address a study would join
    (``address``, else RAY_ADDRESS): Ray's driver retries such an address for minutes,
    printing only warnings."""
    joining = address or os.environ.get("RAY_ADDRESS")
    where = "ray_address" if address else "RAY_ADDRESS"
    host, colon, port = (joining or "").removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit() or "://" in host:
        return  # none (a local cluster), "auto", "local": ray.init decides
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise StudyError(f"no Ray cluster answers at {joining} ({where}): "
                         f"{exc.strerror or exc}; check the address and that the cluster is "
                         f"up, or unset {where} to run on a new local cluster") from None


def connect(address: str | None, labels: Mapping[str, str] | None = None) -> None:
    """Join the Ray cluster at ``address`` (or RAY_ADDRESS, or a running local one), else
    start one on this machine whose node carries ``labels`` (what the cost meter reads)."""
    if ray.is_initialized():
        return
    joining = address or os.environ.get("RAY_ADDRESS")
    if joining and joining != "local":
        ray_compat.use_token_if_available()
    options: dict[str, Any] = {
        "address": address, "logging_level": logging.WARNING, "log_to_driver": False,
        "include_dashboard": False if address in (None, "local") else None,
        "configure_logging": True}
    try:
        with _ctrl_c_held(), ray_compat.token_notice_quiet():
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


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block ends, then raise it. Ray starts a local
    cluster's processes by fork, and a KeyboardInterrupt raised in fork's callbacks is only
    printed ("Exception ignored") and lost: the study then ran as if never interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _local_labels(settings: StudySettings) -> dict[str, str]:
    from tuner.cost.nodes import labels_for

    return labels_for(settings.default_market, settings.default_instance_type, settings.region,
                      launched_at=time.time())


_ENV = {"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # _Search checks the metric itself
        "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: no progress tables
        "TUNE_GLOBAL_CHECKPOINT_S": "3"}  # how stale a resumed experiment can be
_PENDING = "TUNE_MAX_PENDING_TRIALS_PG"
_SLOW_SUGGEST = "Define-by-run function passed in the `space` argument took"
_QUIET_LOGGERS = ("ray.tune", "ray.train", "ray.air")


def _sigterm_as_ctrl_c() -> Any:
    """SIGTERM (a scheduler, `kill`) stops the study as Ctrl-C does: Tune saves its state
    and the study ends interrupted. Returns the handler it replaced (None off the main
    thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


class _TrialErrorsInShort(logging.Filter):
    """Tune's ERROR line and traceback for a failed trial task, made short. A task lost to
    a preempted node is dropped: Tune retries the trial from its checkpoint without counting
    a failure, and the study says so in one line ("trial ... preempted"). Any other failure
    keeps the frames of the trainable (and of what it called) and the error, without Ray's
    and tuner's 20-odd frames; Ray keeps the whole traceback in the trial's error.txt. A
    failure with the same frames and error as one logged already (retries of a trainable
    that always raises) is one line."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._seen: dict[str, str] = {}  # a short traceback -> the first trial that had it

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if not message.startswith(self._prefix):
            return True
        exception = record.exc_info[1] if record.exc_info else None
        if ray_compat.is_preemption(exception):
            return False
        try:
            short = ray_compat.user_traceback(exception)
        except Exception:  # a log line must never stop the study: Tune's stays
            short = None
        if short:
            trial = message[len(self._prefix):].split()[-1].rsplit("_", 1)[-1]
            first = self._seen.get(short)
            if first is None:
                self._seen[short] = trial
                record.msg = (f"trial {trial} failed:\n{short}\n  (the whole traceback, Ray's "
                              f"frames too: trial_{trial}/error.txt in the study's directory)")
            else:
                whose = "its" if first == trial else f"trial {first}'s"
                record.msg = (f"trial {trial} failed: {short.splitlines()[-1]} (the same as "
                              f"{whose} failure above; trial_{trial}/error.txt)")
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


@contextlib.contextmanager
def _study_process(experiment_dir: str) -> Iterator[None]:
    """What a study changes in this process -- Tune's switches, log levels, Optuna's
    verbosity, the trial-error filter on Tune's error log, the live bookkeeping -- restored
    when it ends, so a plain Ray Tune run later in the same notebook inherits none of it."""
    ray_compat.check_env_switches()
    error_logger, error_prefix = ray_compat.trial_error_log()
    trial_errors = _TrialErrorsInShort(error_prefix)
    logging.getLogger(error_logger).addFilter(trial_errors)
    env = {k: os.environ.get(k) for k in (*_ENV, _PENDING)}
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    verbosity = optuna.logging.get_verbosity()
    for switch, setting in _ENV.items():
        os.environ.setdefault(switch, setting)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # Tune's closing "Trials did not complete: [train_...]": the study's table lists
        # the failed trials, with their errors
        with warnings.catch_warnings(), ray_compat.lines_dropped("ray.tune.tune",
                                                                 "Trials did not complete"):
            # OptunaSearch times the space's define-by-run function, TPE's sampling included,
            # and past 1 s tells the user to move training out of it: ours holds none.
            warnings.filterwarnings("ignore", message=_SLOW_SUGGEST, category=UserWarning)
            yield
    finally:
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        optuna.logging.set_verbosity(verbosity)
        logging.getLogger(error_logger).removeFilter(trial_errors)
        for per_study in (_BOOKS, _CHECKED, VERBOSE):
            per_study.pop(experiment_dir, None)


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


def preflight(settings: StudySettings, source: str | None = None) -> None:
    """Join (or start) the study's cluster and check that its trials fit a node: before
    the study is recorded, so one refused leaves nothing behind to resume or to clash
    with its corrected run's name. ``run_study`` then finds Ray connected. ``source``: the
    file (or ``tune()``) the settings came from, named by a refusal (a :class:`ConfigError`;
    without it, as for a recorded study, a :class:`StudyError`)."""
    connect(settings.ray_address, _local_labels(settings))
    reason = unschedulable(settings.resources_per_trial, ray_compat.node_shapes())
    if reason and source is not None:
        raise ConfigError(source, "resources_per_trial", reason)
    if reason:
        raise StudyError(f"resources_per_trial {reason}")


def run_study(trainable: Callable[..., Any], space: SearchSpace, settings: StudySettings,
              experiment_dir: str, tune_path: str, verbose: bool = True) -> None:
    """Run a new study whose record already exists in ``experiment_dir``; Tune keeps its
    experiment at ``tune_path`` (the same directory, or a URI such as ``s3://...``)."""
    with _study_process(experiment_dir):
        preflight(settings)  # Ray connected already when tune() ran it
        _ship_by_value(trainable)
        asha = _Asha(time_attr=ITERATION, metric=settings.metric, mode=settings.mode,
                     max_t=settings.max_t, grace_period=settings.first_rung,
                     reduction_factor=settings.reduction_factor)
        search = _Search(asha, space=space.suggest, metric=settings.metric, mode=settings.mode,
                         study_name=os.path.basename(experiment_dir),
                         storage=optuna_storage(experiment_dir),
                         sampler=tpe_sampler(settings.seed, settings.tpe_multivariate,
                                             settings.tpe_n_ei_candidates,
                                             settings.tpe_n_startup_trials))
        resources = settings.resources_per_trial
        study = _StudyCallback(experiment_dir, asha, verbose, search)
        tuner = Tuner(
            tune.with_resources(with_trial_mixin(trainable), dict(resources)),
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
                 settings: StudySettings, budget_raised: Collection[str] | None = None,
                 verbose: bool = True) -> None:
    """Continue a study whose driver stopped: same trials, Optuna study and MLflow runs.
    ``budget_raised``: it had stopped at its budget, which was raised, and goes on with new
    trials up to ``num_samples`` besides these, the trials it had started. ``verbose``:
    this driver's progress lines (Tune restores the callback with the first driver's)."""
    resources = settings.resources_per_trial
    VERBOSE[experiment_dir] = verbose
    with _study_process(experiment_dir):
        preflight(settings)
        _ship_by_value(trainable)
        # a snapshot cut between its two files; and a search Tune ended at the budget
        ray_compat.reconcile_trial_count(tune_path, started=budget_raised)
        tuner = Tuner.restore(tune_path, tune.with_resources(with_trial_mixin(trainable), dict(resources)),
                              resume_unfinished=True, resume_errored=False)
        _fit(tuner, experiment_dir, resources, settings.max_concurrent_trials)


def can_restore(tune_path: str) -> bool:
    """Whether Ray Tune saved the experiment at ``tune_path`` (its first snapshot)."""
    return bool(Tuner.can_restore(tune_path))


def fail_running_optuna_trials(experiment_dir: str) -> None:
    """Mark FAIL the Optuna trials a dead driver left RUNNING (they will not report)."""
    storage = optuna_storage(experiment_dir)
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _ray_names(resources: Mapping[str, float]) -> dict[str, float]:
    """``{"cpu": 1, "gpu": 1}`` as Ray names them (``CPU``, ``GPU``); zeros dropped."""
    return {("CPU" if k == "cpu" else "GPU" if k == "gpu" else k): v
            for k, v in resources.items() if v > 0}


def trial_slots(cluster: Mapping[str, float], resources: Mapping[str, float]) -> int:
    """How many trials needing ``resources`` (``{"cpu": 1}``) fit in ``cluster``'s totals
    (``ray.cluster_resources()``); at least 1."""
    fits = [int(cluster.get(k, 0) // v) for k, v in _ray_names(resources).items()]
    return max(1, min(fits, default=1))


def unschedulable(resources: Mapping[str, float],
                  shapes: list[dict[str, float]]) -> str | None:
    """Why no trial needing ``resources`` can ever run on nodes of these ``shapes`` (each
    node's total resources; ``{}``: a node type whose resources the autoscaler has not
    said, which may fit), or None when one of them fits it. A trial's resources must all
    be on one node."""
    need = _ray_names(resources)
    if any(not shape or all(shape.get(k, 0) >= v for k, v in need.items()) for shape in shapes):
        return None
    short = sorted(k for k, v in need.items() if all(shape.get(k, 0) < v for shape in shapes))
    kinds: dict[str, int] = {}
    for shape in shapes:
        text = ", ".join(f"{k} {v:g}" for k, v in sorted(shape.items())
                         if k in ("CPU", "GPU") or k in need) or "nothing"
        kinds[text] = kinds.get(text, 0) + 1
    have = "; ".join(f"{n} x {{{text}}}" for text, n in kinds.items()) or "no nodes"
    return (f"{dict(resources)} fits no node the cluster has or may add "
            f"({', '.join(short) or 'together'} too large: its nodes have {have}); ask for what "
            f"one node has, or add a node type that has it")


def _fit(tuner: Tuner, experiment_dir: str, resources: Mapping[str, float],
         max_concurrent: int | None) -> None:
    # Tune lets a searcher other than random search have one trial waiting for resources at
    # a time, unless max_concurrent_trials is set: a cluster then fills one actor start at
    # a time, and with actor reuse the first node can take every trial. Let as many wait
    # as the cluster holds now (an autoscaling cluster scales for max_concurrent_trials).
    if _PENDING not in os.environ and max_concurrent is None:  # _study_process restores it
        os.environ[_PENDING] = str(trial_slots(ray.cluster_resources(), resources))
    ray_compat.count_a_dead_reused_actor_once()  # a spot node lost while a trial takes its actor
    sigterm = _sigterm_as_ctrl_c()  # after ray.init, which installs its own handler
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
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
