"""Round 10's pilot: the multi-fidelity GP sampler (benchmarks/gp_sampler.py, at commit
837922c, retired after it; this script runs at that commit) against ours as shipped, on 8
of the 17 even tasks, seeds 0-2, K = 4, 20 FTE, through the same simulator and the
product's `_Asha` + `_Search`. The shipped default's studies are read from
results/choice/runs.json.gz (same code, same seeds); regret here is against each task's
2000-configuration pool best only.

    PYTHONPATH=. python benchmarks/results/choice/round10_gp_pilot.py 8 3 '{"need": 3}'
"""

import json
import os
import sys
import time

import numpy as np

from benchmarks import protocol as P
from benchmarks import sim
from benchmarks.gp_sampler import MultiFidelityGPSampler, asha_levels
from benchmarks.lcbench import shared


def at(run: dict, budget: float) -> float:
    seen = [b for c, b in zip(run["cost"], run["best"]) if c <= budget]
    return max(seen) if seen else float("nan")


def main() -> None:
    ntask, nseed = int(sys.argv[1]), int(sys.argv[2])
    settings = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    levels = settings.pop("levels", None) or asha_levels(2, 3, sim.MAX_T)
    every = list(shared().tasks)
    even = every[::2]
    tasks = even[::max(1, len(even) // ntask)][:ntask]
    P.load_cache(os.path.join(P.OUT, "choice", "runs.json.gz"), read_only=True)
    ref = P.reference(tasks)
    rows = []
    for t in tasks:
        fte = ref[t]["fte_s"]
        for s in range(nseed):
            base = P._CACHE[(P.SHIPPED, t, s, 4, round(20.0, 6))]
            started = time.process_time()
            np.random.seed(s)
            method = sim.tuner_method(s, sampler=lambda seed: MultiFidelityGPSampler(
                levels, seed=seed, **settings))
            trace = sim.simulate(method, sim.Task(t), 4, 20 * fte)
            run = {"cost": [c / fte for c in trace.cost], "best": trace.best}
            row = [t, s, trace.trials, round(time.process_time() - started, 1)]
            for b in (5, 10, 20):
                row += [round(ref[t]["pool_best"] - at(run, b), 2),
                        round(ref[t]["pool_best"] - at(base, b), 2)]
            rows.append(row)
            print(row, flush=True)
    a = np.array([r[4:] for r in rows], float)
    print("mean regret gp/ours @5,10,20:", np.nanmean(a, 0).round(2))


if __name__ == "__main__":
    main()
