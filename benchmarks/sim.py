"""One discrete-event simulator for every method on the LCBench surrogate.

K virtual workers share a virtual clock. A worker asks the method for a configuration,
"trains" it one epoch at a time -- each epoch takes the surrogate's own seconds for it,
nothing sleeps -- and after every epoch hands the result to the method, which says
continue or stop; a stopped or finished trial frees the worker for the next suggestion.
Every method sees the same executor, the same clock and the same price (cost = worker
seconds: K x the virtual wall time, idle workers included).

Epoch 1 of LCBench is the untrained model (YAHPO Gym's FAQ: use epochs 2-52), so every
method sees epochs 2..52 as iterations 1..51 (``MAX_T``); iteration 1 is charged the
seconds of epochs 1 and 2.

The product's methods are the very objects ``tuner.engine.run.run_study`` builds
(``tuner.engine.search._Asha`` and ``_Search``) driven through Ray Tune's searcher and
scheduler interfaces in the order Tune's controller calls them (scheduler
``on_trial_result`` first; on CONTINUE the searcher's ``on_trial_result``; on STOP the
scheduler's and searcher's ``on_trial_complete``). The Optuna study lives in memory
instead of the product's journal file (same sampler, same trials; only I/O differs).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.lcbench import EPOCHS, SPACE, Curve, shared

METRIC = "val_accuracy"
ITER = "training_iteration"
MAX_T = EPOCHS - 1  # iterations 1..51 = epochs 2..52


def space():
    from tuner.search_space import load_space

    return load_space(SPACE)


# --------------------------------------------------------------------------- the task


class Task:
    """One LCBench task: curves from the surrogate, cached per configuration."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._cache: dict[tuple, Curve] = {}

    def curve(self, config: Mapping[str, Any]) -> Curve:
        params = {k: config[k] for k in SPACE}
        key = tuple(sorted(params.items()))
        if key not in self._cache:
            self._cache[key] = shared().curve(self.task_id, params)
        return self._cache[key]


def iteration_seconds(curve: Curve, it: int) -> float:
    """Seconds of iteration ``it`` (1..51): epoch it+1, plus epoch 1 for the first."""
    if it == 1:
        return curve.epoch_seconds(1) + curve.epoch_seconds(2)
    return curve.epoch_seconds(it + 1)


def iteration_accuracy(curve: Curve, it: int) -> float:
    return float(curve.val_accuracy[it])  # epoch it+1


# --------------------------------------------------------------------------- executor


@dataclass
class Trace:
    """What one study saw: the incumbent after every improvement, on the cost axis."""

    cost: list[float] = field(default_factory=list)  # worker-seconds when the best improved
    best: list[float] = field(default_factory=list)  # best val_accuracy (percent) seen by then
    trials: int = 0
    iterations: int = 0
    spent: float = 0.0  # worker-seconds at the end (K x wall)
    finals: list[float] = field(default_factory=list)  # accuracy of trials trained to MAX_T


class Method:
    """What the executor drives: suggest a configuration, judge each result."""

    def suggest(self, trial_id: str) -> dict | None:
        raise NotImplementedError

    def result(self, trial_id: str, it: int, acc: float) -> bool:
        """Record iteration ``it``'s accuracy; True to continue the trial."""
        raise NotImplementedError


def simulate(method: Method, task: Task, workers: int, budget_s: float = math.inf,
             max_trials: int | None = None) -> Trace:
    """Run ``method`` on ``task`` with ``workers`` virtual workers until ``budget_s``
    worker-seconds are spent (or ``max_trials`` trials have ended)."""
    trace = Trace()
    wall_limit = budget_s / workers
    events: list[tuple[float, int, int]] = []  # (time, seq, worker)
    seq = itertools.count()
    running: dict[int, tuple[str, dict, Curve, int]] = {}  # worker -> trial, config, curve, it
    ids = itertools.count()
    started = ended = 0
    best = -math.inf

    def start(worker: int, now: float) -> None:
        nonlocal started
        if (max_trials is not None and started >= max_trials) or now >= wall_limit:
            return
        trial_id = f"{next(ids):05d}"
        config = method.suggest(trial_id)
        if config is None:  # the method waits; nothing else in our peers does this
            return
        started += 1
        curve = task.curve(config)
        running[worker] = (trial_id, config, curve, 1)
        heapq.heappush(events, (now + iteration_seconds(curve, 1), next(seq), worker))

    for w in range(workers):
        start(w, 0.0)
    now = 0.0
    while events:
        now, _, worker = heapq.heappop(events)
        if now > wall_limit:
            now = wall_limit
            break
        trial_id, config, curve, it = running[worker]
        acc = iteration_accuracy(curve, it)
        trace.iterations += 1
        if acc > best:
            best = acc
            trace.cost.append(now * workers)
            trace.best.append(acc)
        go_on = method.result(trial_id, it, acc) and it < MAX_T
        if go_on:
            running[worker] = (trial_id, config, curve, it + 1)
            heapq.heappush(events, (now + iteration_seconds(curve, it + 1), next(seq), worker))
            continue
        if it == MAX_T:
            trace.finals.append(acc)
        del running[worker]
        ended += 1
        start(worker, now)
    trace.trials = started
    trace.spent = now * workers
    return trace


# --------------------------------------------------------------------------- methods


class _TuneTrial:
    """The part of a Ray Tune Trial the schedulers read."""

    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id = trial_id
        self.config = config


class RayMethod(Method):
    """A Ray Tune searcher + scheduler pair, called as Tune's controller calls them."""

    def __init__(self, searcher: Any, scheduler: Any) -> None:
        self.searcher, self.scheduler = searcher, scheduler
        self.trials: dict[str, _TuneTrial] = {}

    def suggest(self, trial_id: str) -> dict | None:
        config = self.searcher.suggest(trial_id)
        if config is None:
            return None
        trial = self.trials[trial_id] = _TuneTrial(trial_id, config)
        self.scheduler.on_trial_add(None, trial)
        return config

    def result(self, trial_id: str, it: int, acc: float) -> bool:
        from ray.tune.schedulers import TrialScheduler

        trial = self.trials[trial_id]
        res = {METRIC: acc, ITER: it, "done": False, "trial_id": trial_id,
               **{f"config/{k}": v for k, v in trial.config.items()}}
        decision = self.scheduler.on_trial_result(None, trial, res)
        if decision != TrialScheduler.STOP and it < MAX_T:
            self.searcher.on_trial_result(trial_id, res)
            return True
        res["done"] = True
        self.scheduler.on_trial_complete(None, trial, res)
        self.searcher.on_trial_complete(trial_id, result=res)
        del self.trials[trial_id]
        return False


def _quiet() -> None:
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray.tune", "ray.tune.search.optuna.optuna_search"):
        logging.getLogger(name).setLevel(logging.ERROR)


def tuner_method(seed: int, *, grace_period: int | None = None, reduction_factor: float | None = None,
                 brackets: int = 1, sampler: Callable[[int], Any] | None = None) -> Method:
    """What ``tuner.tune`` builds (``run_study``): ``_Asha`` + ``_Search`` over the space.
    Defaults are the product's (``StudySettings`` for this ``max_t``: its first rung,
    reduction factor and sampler);
    ``sampler`` (a function of the seed) and ``brackets`` are settings a variant passes
    through the same classes (OptunaSearch's ``sampler``, ASHA's ``brackets``)."""
    from tuner.engine.search import _Asha, _Search

    _quiet()
    shipped = _shipped()
    asha = _Asha(time_attr=ITER, metric=METRIC, mode="max", max_t=MAX_T,
                 grace_period=grace_period or shipped.first_rung,
                 reduction_factor=reduction_factor or shipped.reduction_factor, brackets=brackets)
    search = _Search(asha, space=space().suggest, metric=METRIC, mode="max",
                     study_name=f"sim-{seed}", storage=None,
                     sampler=(sampler or _shipped_sampler)(seed))
    return RayMethod(search, asha)


@functools.cache
def _shipped() -> Any:
    """The product's default settings for a study of this benchmark's ``max_t``."""
    from tuner.config import StudySettings

    return StudySettings(metric=METRIC, max_t=MAX_T)


def _shipped_sampler(seed: int) -> Any:
    """The sampler ``run_study`` builds with the product's default settings."""
    from tuner.engine.search import tpe_sampler

    s = _shipped()
    return tpe_sampler(seed, s.tpe_multivariate, s.tpe_n_ei_candidates, s.tpe_n_startup_trials)


def ray_defaults_method(seed: int, *, random: bool = False) -> Method:
    """Ray Tune as its docs wire it: OptunaSearch (TPE) and ASHAScheduler with Ray's
    defaults (grace_period 1, reduction_factor 4, one bracket); ``random``: Optuna's
    random sampler instead of TPE (ASHA with random sampling)."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    _quiet()
    sched = ASHAScheduler(time_attr=ITER, metric=METRIC, mode="max", max_t=MAX_T)
    kwargs: dict[str, Any] = ({"sampler": optuna.samplers.RandomSampler(seed=seed)} if random
                              else {"seed": seed})
    search = OptunaSearch(space=space().suggest, metric=METRIC, mode="max", **kwargs)
    return RayMethod(search, sched)


class OptunaMethod(Method):
    """Optuna's ask-and-tell: a sampler, and optionally a pruner asked after each report.
    The study is named after the seed: HyperbandPruner puts trials in brackets by a hash
    of the study's name, and Optuna's generated names differ from run to run."""

    def __init__(self, seed: int, sampler: Any, pruner: Any | None = None) -> None:
        import optuna

        _quiet()
        self.optuna = optuna
        self.pruner = pruner
        self.study = optuna.create_study(study_name=f"sim-{seed}", direction="maximize",
                                         sampler=sampler,
                                         pruner=pruner or optuna.pruners.NopPruner())
        self.space = space()
        self.trials: dict[str, Any] = {}

    def suggest(self, trial_id: str) -> dict | None:
        trial = self.study.ask()
        self.space.suggest(trial)
        self.trials[trial_id] = trial
        return dict(trial.params)

    def result(self, trial_id: str, it: int, acc: float) -> bool:
        trial = self.trials[trial_id]
        if it == MAX_T:
            self.study.tell(trial, acc)
            del self.trials[trial_id]
            return False
        if self.pruner is None:
            return True
        trial.report(acc, it)
        if trial.should_prune():
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
            del self.trials[trial_id]
            return False
        return True


def random_full(seed: int) -> Method:
    import optuna

    return OptunaMethod(seed, optuna.samplers.RandomSampler(seed=seed))


def tpe_full(seed: int) -> Method:
    import optuna

    return OptunaMethod(seed, optuna.samplers.TPESampler(seed=seed))


def optuna_hyperband(seed: int) -> Method:
    import optuna

    return OptunaMethod(seed, optuna.samplers.TPESampler(seed=seed),
                        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_T,
                                                       reduction_factor=3))


class SyneMethod(Method):
    """A Syne Tune scheduler (stopping type), called as Syne Tune's Tuner calls it."""

    def __init__(self, scheduler: Any) -> None:
        from syne_tune.backend.trial_status import Trial

        self._trial_cls = Trial
        self.scheduler = scheduler
        self.trials: dict[str, Any] = {}

    def _ask(self, trial_id: str) -> Any:
        return self.scheduler.suggest()

    def _stopped(self, trial: Any) -> None:
        """A trial the scheduler stopped (Syne Tune 0.16's ASHA needs no word of it)."""

    def suggest(self, trial_id: str) -> dict | None:
        import datetime

        suggestion = self._ask(trial_id)
        if suggestion is None or suggestion.config is None:
            return None
        trial = self._trial_cls(trial_id=int(trial_id), config=suggestion.config,
                                creation_time=datetime.datetime.now())
        self.scheduler.on_trial_add(trial)
        self.trials[trial_id] = trial
        return {k: suggestion.config[k] for k in SPACE}

    def result(self, trial_id: str, it: int, acc: float) -> bool:
        trial = self.trials[trial_id]
        res = {METRIC: acc, ITER: it}
        decision = self.scheduler.on_trial_result(trial, res)
        if it >= MAX_T:
            self.scheduler.on_trial_complete(trial, res)
        elif decision == "STOP":
            self._stopped(trial)
        if decision == "STOP" or it >= MAX_T:
            del self.trials[trial_id]
            return False
        return True


def syne_space() -> dict:
    from syne_tune.config_space import lograndint, loguniform, randint, uniform

    out = {}
    for name, p in SPACE.items():
        if p["type"] == "int":
            out[name] = (lograndint if p.get("log") else randint)(p["low"], p["high"])
        else:
            out[name] = (loguniform if p.get("log") else uniform)(p["low"], p["high"])
    return out


def syne_method(kind: str, seed: int) -> Method:
    """Syne Tune's asynchronous model-based multi-fidelity schedulers, their defaults
    (grace_period 1, reduction_factor 3): ``cqr`` (ASHA + conformal quantile regression,
    Salinas et al. 2023) or ``bohb`` (ASHA + BOHB's KDE)."""
    import logging

    import numpy as np  # Syne Tune picks brackets with numpy's global generator
    from syne_tune.optimizer import baselines

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    np.random.seed(seed)
    cls = {"cqr": baselines.ASHACQR, "bohb": baselines.BOHB}[kind]
    return SyneMethod(cls(config_space=syne_space(), metric=METRIC, time_attr=ITER,
                          max_t=MAX_T, do_minimize=False, random_seed=seed))


# --------------------------------------------------------------------------- reference


def random_configs(n: int, seed: int) -> list[dict]:
    """``n`` configurations drawn at random from the space, as Optuna's RandomSampler draws."""
    import optuna

    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    sp = space()
    configs = []
    for _ in range(n):
        trial = study.ask()
        sp.suggest(trial)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def random_pool(task_id: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch-52 accuracy and 52-epoch seconds of ``n`` random configurations."""
    rows = [{**c, "OpenML_task_id": task_id, "epoch": EPOCHS} for c in random_configs(n, seed)]
    out = shared().predict(rows)
    return (np.array([o["val_accuracy"] for o in out]), np.array([o["time"] for o in out]))
