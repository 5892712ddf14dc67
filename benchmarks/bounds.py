"""Where each method's best configuration lies: at the bounds of the space or inside it.

The LCBench surrogate is a neural network fitted to 2000 random configurations per task
(Zimmer et al. 2021), so it has seen next to nothing near the corners of the space, where
several parameters sit at their bounds at once. What it predicts there is extrapolation.
This measures, on the very studies of the protocol (same simulator, same seeds, K = 4, 20
FTE), how far each method's best configuration is from the bounds, and what the surrogate
says at the 128 corners (every parameter at its low or its high bound) against the
2000-configuration pool.

    python -m benchmarks.bounds                  # (make bench-bounds) what is not recorded yet
    python -m benchmarks.bounds --methods "Syne Tune MOBSTER" --seeds 2
    python -m benchmarks.bounds --table          # results/bounds.json -> markdown

The pinned peers (DEHB, MOBSTER, Hyper-Tune) run in ``.venv-peers``, as in the protocol.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Collection
from typing import Any

import numpy as np

from benchmarks import pinned_peers, sim
from benchmarks.lcbench import EPOCHS, SPACE, shared
from tuner.search_space import EDGE

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bounds.json")
BUDGET_FTE = 20.0
# Where the surrogate has data: at most this many parameters at an end (of 2000 random
# configurations, 187 have 2 and 16 have 3 or more)
INSIDE = 2
WORKERS = 4


@functools.cache
def _space() -> Any:
    return sim.space()


def at_bounds(config: dict) -> int:
    """How many parameters of ``config`` sit at an end of their range (the product's own
    test, ``SearchSpace.at_edge``: within 2% of it, in the parameter's scale)."""
    return len(_space().at_edge(config))


def corners(task: str) -> tuple[float, dict]:
    """The best epoch-52 accuracy over the 128 corners of the space, and that corner."""
    names = list(SPACE)
    every = [{n: SPACE[n]["high" if hi else "low"] for n, hi in zip(names, bits)}
             for bits in itertools.product((False, True), repeat=len(names))]
    acc = [o["val_accuracy"] for o in shared().predict(
        [{**c, "OpenML_task_id": task, "epoch": EPOCHS} for c in every])]
    i = int(np.argmax(acc))
    return float(acc[i]), every[i]


class _Recorder(sim.Method):
    """Passes everything to ``inner``; keeps each trial's configuration and best value."""

    def __init__(self, inner: sim.Method) -> None:
        self.inner = inner
        self.trials: dict[str, list] = {}

    def suggest(self, trial_id: str) -> dict | None:
        config = self.inner.suggest(trial_id)
        if config is not None:
            self.trials[trial_id] = [config, -math.inf]
        return config

    def result(self, trial_id: str, it: int, acc: float) -> bool:
        self.trials[trial_id][1] = max(self.trials[trial_id][1], acc)
        return self.inner.result(trial_id, it, acc)


def study(job: tuple) -> dict:
    """One study of the protocol (method, task, seed; K = 4, 20 FTE), with where its best
    configuration lies."""
    from benchmarks import protocol

    name, task, seed, fte_s = job
    np.random.seed(seed)  # as protocol._job: Ray's ASHA draws brackets from it
    rec = _Recorder(protocol.ALL[name](seed))
    started = time.process_time()
    sim.simulate(rec, sim.Task(task), WORKERS, BUDGET_FTE * fte_s)
    trials = sorted(([value, at_bounds(c), c] for c, value in rec.trials.values()),
                    key=lambda t: -t[0])  # best first
    best, ends, config = trials[0]
    inside = [value for value, n, _ in trials if n <= INSIDE]
    return {"method": name, "task": task, "seed": seed, "best": best, "config": config,
            "best_inside": max(inside, default=None), "at_bounds": ends,
            "top10_at_bounds": float(np.mean([n for _, n, _ in trials[:10]])),
            "trials": len(rec.trials), "cpu_s": round(time.process_time() - started, 1)}


def _run(jobs: list[tuple], procs: int) -> list[dict]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=procs) as pool:
        out = []
        for row in pool.map(study, jobs):
            print(f"{row['method'][:40]:40} {row['task']:>7} s{row['seed']} best {row['best']:6.2f} "
                  f"at bounds {row['at_bounds']} ({row['cpu_s']} s)", flush=True)
            out.append(row)
        return out


def main(argv: list[str] | None = None) -> None:
    from benchmarks import protocol

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bounds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="*", default=[protocol.SHIPPED, *protocol.PEERS],
                    help="default: ours as shipped and every peer of the protocol")
    ap.add_argument("--tasks", choices=("held-out", "even", "all"), default="held-out")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--table", action="store_true", help="print the table of --out")
    ap.add_argument("--jobs", nargs=2, help=argparse.SUPPRESS)  # in .venv-peers: IN OUT
    args = ap.parse_args(argv)
    if args.jobs:  # from pinned_peers.run_elsewhere
        src, dst = args.jobs
        with open(src, encoding="utf-8") as f:
            spec = json.load(f)
        rows = _run([tuple(j) for j in spec["jobs"]], spec["procs"])
        with open(dst, "w", encoding="utf-8") as f:
            json.dump(rows, f)
        return
    if args.table:
        return print("\n".join(table(_load(args.out))))
    every = list(shared().tasks)
    tasks = {"held-out": every[1::2], "even": every[::2], "all": every}[args.tasks]
    ref = protocol.reference(every)
    done = _load(args.out)
    done["studies"] = [r for r in done["studies"] if "best_inside" in r]  # else run again
    have = {(r["method"], r["task"], r["seed"]) for r in done["studies"]}
    jobs = [(m, t, s, ref[t]["fte_s"]) for m in args.methods for t in tasks
            for s in range(args.seeds) if (m, t, s) not in have]
    here = [j for j in jobs if j[0] not in protocol.PINNED]
    there = [j for j in jobs if j[0] in protocol.PINNED]
    rows = _run(here, args.procs) if here else []
    if there:
        rows += pinned_peers.run_elsewhere(there, args.procs, ("benchmarks.bounds", "--jobs"))
    for t in every:
        if t not in done["corners"]:
            acc, corner = corners(t)
            done["corners"][t] = {"best": acc, "corner": corner,
                                  "pool_best": ref[t]["pool_best"]}
    if "pool_at_bounds" not in done:  # the protocol's reference pool: how LCBench sampled
        counts = [at_bounds(c) for c in sim.random_configs(protocol.POOL, seed=12345)]
        done["pool_at_bounds"] = {str(k): counts.count(k) for k in range(len(SPACE) + 1)}
    done["studies"] += rows
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(done, f, indent=0)
    print("\n".join(table(done)))


def _load(path: str) -> dict[str, Any]:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {"edge": EDGE, "budget_fte": BUDGET_FTE, "workers": WORKERS, "corners": {},
            "studies": []}


def table(data: dict[str, Any], seeds: Collection[int] | None = None,
          methods: Collection[str] | None = None) -> list[str]:
    """Markdown of bounds.json's ``data`` (its studies of ``seeds`` and ``methods``, default
    all): per method, how far its best configurations are above the pool's best, and how
    many of their parameters sit at an end of their range."""
    pool = {t: c["pool_best"] for t, c in data["corners"].items()}
    data = {**data, "studies": [r for r in data["studies"]
                                if (seeds is None or r["seed"] in seeds)
                                and (methods is None or r["method"] in methods)]}
    lines = ["| method | studies | best minus the pool's best (points) | the same, best of the "
             f"configurations with at most {INSIDE} parameters at an end | parameters at an end: "
             "best configuration | the same, mean of the 10 best trials | studies whose best "
             "has 4 or more at an end |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by: dict[str, list[dict]] = {}
    for r in data["studies"]:
        by.setdefault(r["method"], []).append(r)
    for m, rows in sorted(by.items(), key=lambda kv: -np.mean([r["at_bounds"] for r in kv[1]])):
        lines.append(f"| {m} | {len(rows)} | "
                     f"{np.mean([r['best'] - pool[r['task']] for r in rows]):+.2f} | "
                     f"{_mean_inside(rows, pool)} | "
                     f"{np.mean([r['at_bounds'] for r in rows]):.2f} | "
                     f"{np.mean([r['top10_at_bounds'] for r in rows]):.2f} | "
                     f"{sum(r['at_bounds'] >= 4 for r in rows)} of {len(rows)} |")
    return lines


def _mean_inside(rows: list[dict], pool: dict[str, float]) -> str:
    values = [r["best_inside"] - pool[r["task"]] for r in rows if r["best_inside"] is not None]
    missing = len(rows) - len(values)
    return f"{np.mean(values):+.2f}" + (f" ({missing} studies had none)" if missing else "")


def paired_inside(data: dict[str, Any], ours: str, peer: str) -> dict[str, Any] | None:
    """Ours minus ``peer`` in points of regret, by the best value anywhere and by the best
    with at most INSIDE parameters at an end: the mean over tasks of each task's mean over
    the seeds both ran, with a bootstrap 95% CI over tasks."""
    from benchmarks.protocol import boot_ci

    rows = data["studies"]
    mine = {(r["task"], r["seed"]): r for r in rows if r["method"] == ours}
    theirs = {(r["task"], r["seed"]): r for r in rows if r["method"] == peer}
    keys = sorted(k for k in mine.keys() & theirs.keys()
                  if mine[k]["best_inside"] is not None and theirs[k]["best_inside"] is not None)
    if not keys:
        return None
    tasks = sorted({t for t, _ in keys})
    out: dict[str, Any] = {"pairs": len(keys), "tasks": len(tasks)}
    for field in ("best", "best_inside"):  # regret difference = their best minus ours
        d = np.array([np.mean([theirs[k][field] - mine[k][field] for k in keys if k[0] == t])
                      for t in tasks])
        out[field] = (float(d.mean()), *boot_ci(d))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
