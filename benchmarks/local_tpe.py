"""Round 11's candidate: TPE that spends a share of its trials refining the incumbent.

Each new trial, with probability ``p_local`` (once there is an incumbent), takes the
incumbent's configuration and moves every parameter by a normal step of ``scale`` times
its range (on the log scale where the distribution is log), clipped to the range and
rounded for integers; the other trials are TPE's. The incumbent is the trial that got
furthest (most iterations reported), best value among those: ASHA stops most trials, so
a completed trial's final value is compared with a stopped trial's value only at the
iteration both reached (or, ``completed_only``, the best completed trial). Every trial,
local or not, feeds TPE as usual.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState


class IncumbentTPESampler(optuna.samplers.TPESampler):
    def __init__(self, *, p_local: float, scale: float, completed_only: bool = False,
                 seed: int | None = None, **tpe: Any) -> None:
        super().__init__(seed=seed, **tpe)
        self._p_local, self._scale, self._completed_only = p_local, scale, completed_only
        self._local_rng = np.random.default_rng(seed)
        self._local: dict[int, dict[str, Any]] = {}  # trial id -> incumbent's params

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        best = incumbent(study, self._completed_only)
        if best is not None and self._local_rng.random() < self._p_local:
            self._local[trial._trial_id] = best.params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        centre = self._local.get(trial._trial_id, {}).get(param_name)
        if centre is None or not isinstance(param_distribution,
                                            (FloatDistribution, IntDistribution)):
            return super().sample_independent(study, trial, param_name, param_distribution)
        return self._step(centre, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._local.pop(trial._trial_id, None)
        super().after_trial(study, trial, state, values)

    def _step(self, centre: float, d: FloatDistribution | IntDistribution) -> Any:
        lo, hi, x = float(d.low), float(d.high), float(centre)
        if d.log:
            lo, hi, x = math.log(lo), math.log(hi), math.log(x)
        y = min(hi, max(lo, x + self._local_rng.normal(0.0, self._scale * (hi - lo))))
        if d.log:
            y = math.exp(y)
        if isinstance(d, IntDistribution):
            return int(min(d.high, max(d.low, round(y))))
        return min(float(d.high), max(float(d.low), y))


def incumbent(study: optuna.Study, completed_only: bool = False) -> FrozenTrial | None:
    """The trial with the most iterations reported, best value there (direction aware);
    ``completed_only``: the best completed trial (none before one completes)."""
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    best, key = None, None
    states = ((TrialState.COMPLETE,) if completed_only
              else (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    for t in study._get_trials(deepcopy=False, states=states):
        if not t.intermediate_values:
            continue
        step = max(t.intermediate_values)
        value = t.intermediate_values[step]
        if not math.isfinite(value):
            continue
        k = (step, sign * value)
        if key is None or k > key:
            best, key = t, k
    return best
