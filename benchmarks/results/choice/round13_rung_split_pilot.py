"""Round 13's pilot: TPE that ranks its trials at a rung they share, not by how deep ASHA let
them go. Optuna's TPE puts every COMPLETE trial in its "good" set before any PRUNED one, and
ranks PRUNED trials by the step they reached first. Under ASHA the first trials reach the
top rung because the rungs were empty when they got there, not because they were good, so
TPE's good set holds them. This variant ranks the finished trials by their value at the
highest step that at least ``m`` x TPE's good-set size of them reached (all of them, if none
did), and takes its good set from the top of that ranking; the rest is Optuna's.

Against ours as shipped (the same `tpe_sampler` settings otherwise), on 8 of the 17 even
tasks, seeds 0-2, K = 4, 20 FTE, through the same simulator and the product's `_Asha` +
`_Search`; the shipped default's studies are read from results/choice/runs.json.gz.

    PYTHONPATH=. python benchmarks/results/choice/round13_rung_split_pilot.py 8 3 2 [OUT.json]
    PYTHONPATH=. python benchmarks/results/choice/round13_rung_split_pilot.py --table OUT.json
"""

import math
import os
import sys
from collections import Counter

import optuna
from optuna.samplers._tpe import sampler as tpe
from optuna.study import StudyDirection
from optuna.trial import TrialState

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from round12_settings_pilot import pilot, save, table

from benchmarks import sim

_OPTUNA_SPLIT = tpe._split_trials


def rung_split(m: float):
    """TPE's split, ranking at the highest step >= ``m`` x n_below finished trials reached."""
    def split(study, trials, n_below):
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        reached = Counter(s for t in finished for s in t.intermediate_values)
        steps = [s for s, c in reached.items() if c >= max(1, math.ceil(m * n_below))]
        if not steps or n_below == 0:
            return _OPTUNA_SPLIT(study, trials, n_below)
        step = max(steps)
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        ranked = sorted((t for t in finished if not math.isnan(t.intermediate_values.get(step, math.nan))),
                        key=lambda t: sign * t.intermediate_values[step])
        below = ranked[:n_below]
        chosen = {t.number for t in below}
        above = [t for t in trials if t.number not in chosen]
        return sorted(below, key=lambda t: t.number), sorted(above, key=lambda t: t.number)
    return split


class RungSplitTPE(optuna.samplers.TPESampler):
    def __init__(self, m: float, **kwargs):
        super().__init__(**kwargs)
        self._split = rung_split(m)

    def _sample(self, study, trial, search_space):
        tpe._split_trials = self._split
        try:
            return super()._sample(study, trial, search_space)
        finally:
            tpe._split_trials = _OPTUNA_SPLIT


def sampler(m: float):
    s = sim._shipped()
    return lambda seed: RungSplitTPE(m, seed=seed, multivariate=s.tpe_multivariate,
                                     n_ei_candidates=s.tpe_n_ei_candidates,
                                     n_startup_trials=s.tpe_n_startup_trials)


def main() -> None:
    if sys.argv[1] == "--table":
        return table(sys.argv[2])
    m = float(sys.argv[3])
    rows = pilot(int(sys.argv[1]), int(sys.argv[2]), sampler(m))
    save(rows, {"good set ranked at the step reached by n_below x": m},
         sys.argv[4] if len(sys.argv) > 4 else None)


if __name__ == "__main__":
    main()
