"""What TPE's number of candidates costs the driver: milliseconds per suggestion (ask and
tell) of independent TPE over 7 float parameters, after n finished trials.

    python -m benchmarks.tpe_cost
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import optuna

PARAMS = 7
REPEATS = 20


def ms_per_suggestion(n_ei_candidates: int, finished: int, seed: int = 0) -> float:
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=False, n_ei_candidates=n_ei_candidates)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rng = np.random.default_rng(seed)
    dists = {f"x{i}": optuna.distributions.FloatDistribution(0, 1) for i in range(PARAMS)}
    for _ in range(finished):
        study.add_trial(optuna.trial.create_trial(
            params={k: float(rng.random()) for k in dists}, distributions=dists, value=float(rng.random())))
    started = time.perf_counter()
    for _ in range(REPEATS):
        trial = study.ask(dists)
        study.tell(trial, float(rng.random()))
    return (time.perf_counter() - started) / REPEATS * 1000


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    sizes, candidates = (100, 500, 2000), (24, 256, 1024)
    print("| finished trials | " + " | ".join(f"{c} candidates (ms)" for c in candidates) + " |")
    print("| ---: |" + " ---: |" * len(candidates))
    for n in sizes:
        print(f"| {n} | " + " | ".join(f"{ms_per_suggestion(c, n):.1f}" for c in candidates) + " |")


if __name__ == "__main__":
    main()
