"""Round 14's pilot: TPE's kernels narrower than Optuna lets them be. Optuna's TPE keeps every
kernel at least (high - low) / min(100, 1 + n) wide ("magic clip"): with the handful of
trials in a good set under ASHA that is an eighth of a parameter's range, which may hold it
back from refining near the best (MOBSTER, ahead of ours at 10 and 20 FTE, refines there).
The variants turn the clip off, or weigh Optuna's flat prior less (``prior_weight``), both
still accepted by Optuna 5 (deprecated since 4.9); every other setting as shipped. Also
multivariate TPE with the shipped 1024 candidates and 5 start-up trials (multivariate lost
in rounds 1-3 with 24 candidates).

Against ours as shipped, on 8 of the 17 even tasks, seeds 0-2, K = 4, 20 FTE, through the
same simulator and the product's `_Asha` + `_Search` (round12_settings_pilot.py's loop).

    PYTHONPATH=. python benchmarks/results/choice/round14_bandwidth_pilot.py 8 3 \
        '{"consider_magic_clip": false}' [OUT.json]
    PYTHONPATH=. python benchmarks/results/choice/round14_bandwidth_pilot.py --table OUT.json
"""

import json
import os
import sys
import warnings

import optuna

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from round12_settings_pilot import pilot, save, table

from benchmarks import sim


def sampler(settings: dict):
    s = sim._shipped()
    opts = {"multivariate": s.tpe_multivariate, "n_ei_candidates": s.tpe_n_ei_candidates,
            "n_startup_trials": s.tpe_n_startup_trials, **settings}

    def make(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.TPESampler(seed=seed, **opts)
    return make


def main() -> None:
    if sys.argv[1] == "--table":
        return table(sys.argv[2])
    settings = json.loads(sys.argv[3])
    rows = pilot(int(sys.argv[1]), int(sys.argv[2]), sampler(settings))
    save(rows, settings, sys.argv[4] if len(sys.argv) > 4 else None)


if __name__ == "__main__":
    main()
