"""A multi-fidelity Gaussian-process sampler for Optuna (round 10's candidate).

MOBSTER's idea (Klein et al., 2020) on Optuna's trial records: one GP over the
configuration and the fidelity, fitted to every trial's value at each rung it reached
(PRUNED trials included, read from their intermediate values), and the next configuration
the one with the highest expected improvement at the highest rung with enough data.
Trials still running are filled in with the GP's mean there (kriging believer), so K
workers asking at once get K different configurations. scikit-learn's GP does the
fitting."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def asha_levels(grace: int, reduction_factor: float, max_t: int) -> list[int]:
    """The steps ASHA ranks trials at: grace * rf**k below max_t, and max_t."""
    levels, r = [], float(grace)
    while r < max_t:
        levels.append(round(r))
        r *= reduction_factor
    return [*levels, max_t]


class MultiFidelityGPSampler(optuna.samplers.BaseSampler):
    def __init__(self, levels: Sequence[int], seed: int | None = None, n_startup_trials: int = 5,
                 n_candidates: int = 2000, n_local: int = 500, acquire_at_max: bool = False,
                 need: int | None = None, copula: bool = False, noise_max: float = 1.0,
                 restarts: int = 0) -> None:
        self._noise_max, self._restarts = noise_max, restarts
        self._copula = copula
        self._levels = sorted(levels)
        self._at_max = acquire_at_max
        self._need = need
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._n_startup = n_startup_trials
        self._n_candidates = n_candidates
        self._n_local = n_local
        self._space = optuna.search_space.IntersectionSearchSpace(include_pruned=True)
        self._theta: np.ndarray | None = None  # the last fit's kernel hyperparameters

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {k: d for k, d in self._space.calculate(study).items() if not d.single()}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        names = sorted(search_space)
        trials = study.get_trials(deepcopy=False, states=_STATES)
        rows, ys, pending = [], [], []
        measured = 0
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        for t in trials:
            if t.number == trial.number or any(n not in t.params for n in names):
                continue
            x = _encode(t.params, names, search_space)
            seen = [r for r in self._levels if r in t.intermediate_values]
            if seen:
                measured += 1
            for r in seen:
                rows.append((x, r))
                ys.append(sign * float(t.intermediate_values[r]))
            if t.state == TrialState.RUNNING:
                pending.append((x, seen))
        if measured < self._n_startup:
            return {}
        ys_arr = np.asarray(ys)
        if self._copula:  # each level's values as normal scores of their ranks
            from scipy.stats import norm, rankdata

            lv = np.array([r for _, r in rows])
            for r in set(lv.tolist()):
                m = lv == r
                ys_arr[m] = norm.ppf((rankdata(ys_arr[m]) - 0.5) / m.sum())
            ys = list(ys_arr)
        counts = {r: sum(1 for _, rr in rows if rr == r) for r in self._levels}
        need = self._need or len(names) + 1
        acq = (self._levels[-1] if self._at_max else
               max([r for r in self._levels if counts[r] >= need] or [self._levels[0]]))
        X = np.array([np.append(x, self._fidelity(r)) for x, r in rows])
        gp = self._fit(X, ys_arr)
        # Kriging believer: a running trial without a value at `acq` counts as its mean there.
        fill = [np.append(x, self._fidelity(acq)) for x, seen in pending if acq not in seen]
        if fill:
            from sklearn.gaussian_process import GaussianProcessRegressor

            F = np.array(fill)
            X2, y2 = np.vstack([X, F]), np.concatenate([ys_arr, gp.predict(F)])
            gp = GaussianProcessRegressor(kernel=gp.kernel_, optimizer=None, normalize_y=True)
            gp.fit(X2, y2)
        at_acq = ys_arr[[r == acq for _, r in rows]]
        if not len(at_acq):  # nothing measured there yet: the GP's best guess at `acq`
            at_acq = gp.predict(np.array([np.append(x, self._fidelity(acq)) for x, _ in rows]))
        best, cut = float(at_acq.min()), float(np.quantile(at_acq, 0.2))
        cands = self._candidates(names, search_space,
                                 [x for (x, r), y in zip(rows, ys) if r == acq and y <= cut]
                                 or [x for x, _ in rows[:1]])
        Z = np.hstack([cands, np.full((len(cands), 1), self._fidelity(acq))])
        mu, sd = gp.predict(Z, return_std=True)
        sd = np.maximum(sd, 1e-9)
        z = (best - mu) / sd
        from scipy.stats import norm

        ei = (best - mu) * norm.cdf(z) + sd * norm.pdf(z)
        return _decode(cands[int(np.argmax(ei))], names, search_space)

    def _fidelity(self, r: int) -> float:
        return math.log(r) / math.log(self._levels[-1]) if self._levels[-1] > 1 else 1.0

    def _fit(self, X: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        d = X.shape[1]
        kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                  * Matern(length_scale=np.full(d, 0.5), length_scale_bounds=(1e-2, 1e2), nu=2.5)
                  + WhiteKernel(min(1e-2, self._noise_max), (1e-6, self._noise_max)))
        if self._theta is not None and len(self._theta) == len(kernel.theta):
            kernel = kernel.clone_with_theta(self._theta)
        gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=self._restarts,
                                      random_state=self._rng.randint(2**31))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, y)
        self._theta = gp.kernel_.theta
        return gp

    def _candidates(self, names: list[str], space: dict[str, BaseDistribution],
                    good: list[np.ndarray]) -> np.ndarray:
        width = sum(_width(space[n]) for n in names)
        cands = [self._random_encoded(names, space) for _ in range(self._n_candidates)]
        if good:
            for i in range(self._n_local):
                x = good[i % len(good)] + self._rng.normal(0, 0.05, width)
                cands.append(np.clip(x, 0.0, 1.0))
        return np.array(cands)

    def _random_encoded(self, names: list[str], space: dict[str, BaseDistribution]) -> np.ndarray:
        parts = []
        for n in names:
            d = space[n]
            if isinstance(d, CategoricalDistribution):
                parts.append(np.eye(len(d.choices))[self._rng.randint(len(d.choices))])
            else:
                parts.append(np.array([self._rng.uniform()]))
        return np.concatenate(parts)


def _width(d: BaseDistribution) -> int:
    return len(d.choices) if isinstance(d, CategoricalDistribution) else 1


def _encode(params: dict[str, Any], names: list[str], space: dict[str, BaseDistribution]) -> np.ndarray:
    parts = []
    for n in names:
        d, v = space[n], params[n]
        if isinstance(d, CategoricalDistribution):
            parts.append(np.eye(len(d.choices))[d.choices.index(v)])
            continue
        assert isinstance(d, (FloatDistribution, IntDistribution))
        lo, hi, v = float(d.low), float(d.high), float(v)
        if d.log:
            lo, hi, v = math.log(lo), math.log(hi), math.log(v)
        parts.append(np.array([(v - lo) / (hi - lo)]))
    return np.concatenate(parts)


def _decode(x: np.ndarray, names: list[str], space: dict[str, BaseDistribution]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    for n in names:
        d = space[n]
        if isinstance(d, CategoricalDistribution):
            k = len(d.choices)
            out[n] = d.choices[int(np.argmax(x[i:i + k]))]
            i += k
            continue
        assert isinstance(d, (FloatDistribution, IntDistribution))
        u = float(np.clip(x[i], 0.0, 1.0))
        i += 1
        lo, hi = float(d.low), float(d.high)
        v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if d.log else lo + u * (hi - lo)
        if isinstance(d, IntDistribution):
            step = d.step
            v = round((v - d.low) / step) * step + d.low
            out[n] = int(min(max(v, d.low), d.high))
        else:
            if d.step is not None:
                v = round((v - lo) / d.step) * d.step + lo
            out[n] = float(min(max(v, lo), hi))
    return out
