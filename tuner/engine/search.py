"""The search: Optuna's TPE through Ray's OptunaSearch, and ASHA, with what Ray's
integration lacks: a trial ASHA stops early is told to Optuna as PRUNED with its
intermediate values (Ray tells it COMPLETE with a truncated value, which misleads TPE),
and a searcher restored from an older snapshot adopts the trials it missed."""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Mapping
from typing import Any, cast

import optuna
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from tuner import ray_compat
from tuner.config import RESERVED_PREFIX
from tuner.engine.trial import BUSY_S, BUSY_UNTIL, ITERATION, NODE_ID
from tuner.errors import MetricNotReported, StudyError
from tuner.record import OPTUNA_JOURNAL
from tuner.study import check_metric

# Keys Ray Tune and the trial wrapper add to every result; the rest is the trainable's own.
_RAY_KEYS = {
    NODE_ID, BUSY_S, BUSY_UNTIL,
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "date", "pid",
    "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "done",
    "trial_id", "experiment_id", "experiment_tag", "config", "checkpoint_dir_name",
    "should_checkpoint", "episodes_total", "timesteps_total", "timesteps_since_restore",
}


def user_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The trainable's own numeric metrics from a Tune result."""
    return {k: float(v) for k, v in result.items()
            if _is_user_key(k) and isinstance(v, numbers.Real) and not isinstance(v, bool)}


def missing_metric(trial_id: str, metric: str, result: Mapping[str, Any]) -> MetricNotReported:
    """The error that stops a study whose trial reported without the study's metric."""
    mine = sorted(k for k in result if _is_user_key(k))
    return MetricNotReported(
        f"trial {trial_id} reported {mine or 'no metrics'} but not the study's metric "
        f"{metric!r}: report it (tuner.report({{{metric!r}: ...}})), then `tuner resume` the "
        f"study; or, if the metric's name is wrong, start a new study (another name) with "
        f"metric set to one of the reported names: a study's metric cannot change")


def _is_user_key(key: str) -> bool:
    return key not in _RAY_KEYS and not key.startswith("config/")


class _Asha(AsyncHyperBandScheduler):
    """ASHA that remembers which trials it stopped before ``max_t`` (pruned)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ray_compat.require_fields(self, ray_compat.ASHA_FIELDS)
        self.pruned: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        check_metric(trial.trial_id, str(self._metric), result)  # before ASHA computes with it
        with warnings.catch_warnings():  # a rung of NaNs only: numpy warns, ASHA goes on
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
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
        if self._ot_study is not None and self._ot_study.metric_names is None:
            with warnings.catch_warnings():  # experimental in Optuna 5; the dashboard reads it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names([str(self.metric)])  # optuna-dashboard's axis

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric not in result:
            return  # the study callback records the iteration, then stops (missing_metric)
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

    @property
    def _study(self) -> optuna.Study:
        """OptunaSearch's study (set once its space and metric are)."""
        return cast(optuna.Study, self._ot_study)

    def _adopt(self, trial_id: str, result: dict) -> None:
        """A trial Tune restored that this searcher's snapshot predates: the driver died
        between the two saves. Give it an Optuna trial with the same parameters."""
        params = {k[len("config/"):]: v for k, v in result.items() if k.startswith("config/")}
        self._study.enqueue_trial(params, skip_if_exists=False)
        ot_trial = self._study.ask()
        self._suggest_from_define_by_run_func(self._space, ot_trial)  # type: ignore[arg-type]
        self._ot_trials[trial_id] = ot_trial

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._ot_trials:  # restored, never reported again: nothing to tell
            if result and self.metric in result:
                self._adopt(trial_id, result)
            else:
                self._completed_trials.add(trial_id)
                return
        ot_trial = self._ot_trials[trial_id]
        if (not error and trial_id not in self._completed_trials and result
                and self.metric in result):
            # the result that ended the trial: Tune gives it here, not to on_trial_result,
            # so its step joins the curve (the dashboard's; TPE ranks PRUNED trials by it)
            step = int(result[ITERATION])
            if step > self._reported.get(trial_id, 0):
                ot_trial.report(result[self.metric], step)
                self._reported[trial_id] = step
        if error or trial_id not in self._asha.pruned or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        # skip: told before the driver restarted
        self._study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        self._completed_trials.add(trial_id)

    def end_unfinished(self) -> None:
        """The study stopped at its budget: Tune ended its trials without a word to the
        searcher. Tell Optuna they ended: PRUNED where a trial reported (TPE ranks it by
        how far it got), FAIL where it never did (TPE leaves it out); a configuration never
        measured waits in the study (enqueued), the first a raised budget runs."""
        running = {t.number for t in self._study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        for trial_id, ot_trial in self._ot_trials.items():
            if trial_id in self._completed_trials:
                continue
            self._completed_trials.add(trial_id)
            if ot_trial.number not in running:  # told by a driver before this one
                continue
            measured = bool(self._reported.get(trial_id))
            self._study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED if measured
                             else optuna.trial.TrialState.FAIL)
            if not measured:
                self._study.enqueue_trial(dict(ot_trial.params), skip_if_exists=False)

    def save(self, checkpoint_path: str) -> None:
        asha, self._asha = self._asha, None  # type: ignore[assignment]  # not picklable
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
        for frozen in self._study.get_trials(deepcopy=False,
                                                states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in known:
                self._study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)


def tpe_sampler(seed: int | None, multivariate: bool, n_ei_candidates: int,
                n_startup_trials: int) -> optuna.samplers.TPESampler:
    """The study's sampler: Optuna's TPE, independent per parameter unless ``multivariate``
    (Optuna 5's default), choosing each configuration among ``n_ei_candidates`` draws after
    ``n_startup_trials`` random ones. With ASHA pruning most trials, independent TPE with
    1024 draws after 5 random trials reached lower regret on the benchmark's choice tasks
    (benchmarks/results/choice/candidates.md); Optuna warns that multivariate is
    experimental, which we silence."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=multivariate,
                                          n_ei_candidates=n_ei_candidates,
                                          n_startup_trials=n_startup_trials)


def optuna_storage(experiment_dir: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(
        JournalFileBackend(os.path.join(experiment_dir, OPTUNA_JOURNAL)))
