"""Round 12's pilot: two TPE settings past the shipped ones, where the earlier rounds'
gains came from (more exploitation: 1024 EI candidates, 5 start-up trials): 3 random
start-up trials, and 4096 candidates. Against ours as shipped, on 8 of the 17 even tasks,
seeds 0-2, K = 4, 20 FTE, through the same simulator and the product's `_Asha` + `_Search`
with the product's `tpe_sampler`. The shipped default's studies are read from
results/choice/runs.json.gz (same code, same seeds); regret here is against each task's
2000-configuration pool best only.

    PYTHONPATH=. python benchmarks/results/choice/round12_settings_pilot.py 8 3 \
        '{"n_startup_trials": 3}' [OUT.json]

With OUT.json, the variant's per-study rows are appended there (round12_settings_pilot.json);
`round12_settings_pilot.py --table OUT.json` prints the markdown table of
round12_settings_pilot.md.
"""

import json
import os
import sys
import time

import numpy as np

from benchmarks import protocol as P
from benchmarks import sim
from benchmarks.lcbench import shared
from tuner.engine.search import tpe_sampler

COLUMNS = ["task", "seed", "trials", "cpu_s", "new_5", "ours_5", "new_10", "ours_10", "new_20",
           "ours_20"]


def at(run: dict, budget: float) -> float:
    seen = [b for c, b in zip(run["cost"], run["best"]) if c <= budget]
    return max(seen) if seen else float("nan")


def sampler(settings: dict):
    s = sim._shipped()
    opts = {"multivariate": s.tpe_multivariate, "n_ei_candidates": s.tpe_n_ei_candidates,
            "n_startup_trials": s.tpe_n_startup_trials, **settings}
    return lambda seed: tpe_sampler(seed, opts["multivariate"], opts["n_ei_candidates"],
                                    opts["n_startup_trials"])


def table(path: str) -> None:
    """Mean regret per budget, and the paired difference (variant minus shipped; per-task
    mean over seeds, bootstrap 95% CI over tasks) at 5 and 20 FTE."""
    print("| variant | new 5 / 10 / 20 FTE | shipped 5 / 10 / 20 | new - shipped at 5 FTE "
          "| at 20 FTE (paired, 95% CI over tasks) | CPU s / study |")
    print("| --- | --- | --- | --- | --- | ---: |")
    for v in json.load(open(path)):
        rows = v["rows"]
        a = np.array([r[4:] for r in rows], float)
        new, ours = a[:, 0::2].mean(0), a[:, 1::2].mean(0)
        tasks = sorted({r[0] for r in rows})
        cells = []
        for k in (0, 2):  # 5 and 20 FTE
            d = np.array([np.mean([r[4 + 2 * k] - r[5 + 2 * k] for r in rows if r[0] == t])
                          for t in tasks])
            lo, hi = P.boot_ci(d)
            cells.append(f"{d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]")
        name = ", ".join(f"{k} {val}" for k, val in v["settings"].items())
        print(f"| {name} | {' / '.join(f'{x:.2f}' for x in new)} | "
              f"{' / '.join(f'{x:.2f}' for x in ours)} | {cells[0]} | {cells[1]} | "
              f"{np.mean([r[3] for r in rows]):.1f} |")


def pilot(ntask: int, nseed: int, make_sampler) -> list[list]:
    """One row per study (COLUMNS) of a sampler (a function of the seed) against the shipped
    default's studies, on ``ntask`` of the even tasks and seeds 0 to ``nseed`` - 1."""
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
            method = sim.tuner_method(s, sampler=make_sampler)
            trace = sim.simulate(method, sim.Task(t), 4, 20 * fte)
            run = {"cost": [c / fte for c in trace.cost], "best": trace.best}
            row = [t, s, trace.trials, round(time.process_time() - started, 1)]
            for b in (5, 10, 20):
                row += [round(ref[t]["pool_best"] - at(run, b), 2),
                        round(ref[t]["pool_best"] - at(base, b), 2)]
            rows.append(row)
            print(row, flush=True)
    return rows


def save(rows: list[list], settings: dict, path: str | None) -> None:
    """Print the means; with ``path``, append the variant's rows there (for :func:`table`)."""
    a = np.array([r[4:] for r in rows], float)
    print(settings, "mean regret new/shipped @5,10,20:", np.nanmean(a, 0).round(2))
    if path:
        done = json.load(open(path)) if os.path.exists(path) else []
        done.append({"settings": settings, "columns": COLUMNS, "rows": rows})
        with open(path, "w", encoding="utf-8") as f:
            json.dump(done, f, indent=0)


def main() -> None:
    if sys.argv[1] == "--table":
        return table(sys.argv[2])
    settings = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    rows = pilot(int(sys.argv[1]), int(sys.argv[2]), sampler(settings))
    save(rows, settings, sys.argv[4] if len(sys.argv) > 4 else None)


if __name__ == "__main__":
    main()
