"""The LCBench protocol: every method through one simulator (benchmarks/sim.py), equal
budgets in full-training equivalents, anytime regret, ranks, tests, held-out tasks.

    python -m benchmarks.protocol --choice     # phase 1: candidates on the even tasks
    python -m benchmarks.protocol              # phase 2: the held-out tasks (make bench)
    python -m benchmarks.protocol --quick      # phase 2 on a few tasks and seeds, minutes

Tasks are the 34 of the vendored surrogate, in its order. The even-indexed 17 choose our
defaults: candidate variants of the product run there only (``--choice``, `make
bench-choice`), and the rule below (``choose``) picks one without looking at the rest; the
pick is made a product default by hand, in ``tuner.config``. The odd-indexed 17 are held
out: the peers, ours as shipped and the default before it run there, and every reported
figure comes from them. Reports, asserts nothing; writes benchmarks/results/ (runs,
tables as JSON, figures).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from benchmarks import log_ndtr, pinned_peers, sim

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
REFERENCE = os.path.join(HERE, "lcbench_reference.json")
POOL = 2000  # random configurations per task for the reference and the FTE
REPORT_AT = (2.5, 5.0, 10.0, 20.0, 50.0)  # FTE
GRID = np.unique(np.concatenate([np.geomspace(0.5, 50, 48), REPORT_AT]))
GOAL_BUDGET = 20.0

SHIPPED = "ours, as shipped (independent TPE, 1024 candidates, 5 start-up trials, ASHA grace 2, rf 3)"
# The product's defaults (``StudySettings``; ``sim.tuner_method`` builds them): a first rung
# at 2 iterations, reduction factor 3, an independent TPESampler(seed, n_ei_candidates=1024,
# n_startup_trials=5) (``tuner.engine.search.tpe_sampler``). Rounds of candidates on the
# even tasks chose them: independent TPE over Optuna 5's default multivariate TPE
# (PREVIOUS, shipped until then), a first rung at 2 over 1, 1024 TPE candidates over
# Optuna's 24 (BEFORE), then 5 random start-up trials over Optuna's 10 (STARTUP10, round 8).
# Round 7 shipped 256 candidates (ROUND7) for one commit; withdrawn (candidates.md).
PREVIOUS = "ours, multivariate TPE (Optuna's default; shipped before)"
BEFORE = "ours, TPE n_ei_candidates=24 (shipped before)"
STARTUP10 = "ours, TPE n_startup_trials=10 (1024 candidates; shipped before)"
ROUND7 = "ours, TPE n_ei_candidates=256 (round 7's default, withdrawn)"
# Earlier defaults are not run again on the held-out tasks: their studies from the last run
# that ran them are read from results/runs.json.gz and analysed with this run's.
EARLIER = (STARTUP10, ROUND7, BEFORE)


PEERS: dict[str, Callable[[int], sim.Method]] = {
    "random search (full fidelity)": sim.random_full,
    "TPE (Optuna, full fidelity)": sim.tpe_full,
    "ASHA + random (Ray defaults)": lambda s: sim.ray_defaults_method(s, random=True),
    "Ray Tune OptunaSearch + ASHA (Ray defaults)": sim.ray_defaults_method,
    "Optuna TPE + HyperbandPruner": sim.optuna_hyperband,
    "Syne Tune BOHB (async, KDE)": lambda s: sim.syne_method("bohb", s),
    "Syne Tune ASHA-CQR": lambda s: sim.syne_method("cqr", s),
    "DEHB": pinned_peers.DehbMethod,
    "Syne Tune MOBSTER": lambda s: pinned_peers.syne_legacy_method("mobster", s),
    "Syne Tune Hyper-Tune": lambda s: pinned_peers.syne_legacy_method("hypertune", s),
}
# Run in the second environment (numpy < 1.27): benchmarks/pinned_peers.py.
PINNED = ("DEHB", "Syne Tune MOBSTER", "Syne Tune Hyper-Tune")
# 20-50 s of CPU a study at 20 FTE (the others 0.04-8 s at 50): held-out tasks only, fewer
# seeds, to 20 FTE.
SLOW_PEERS = ("Syne Tune ASHA-CQR", "Syne Tune MOBSTER", "Syne Tune Hyper-Tune")

# Optuna 5's TPESampler already defaults to multivariate (single objective) and
# constant_liar=True; group=True only matters for conditional spaces (LCBench has none), so
# "TPE multivariate + group + constant_liar" is what ours runs already (checked: the same
# seeds give identical studies) and is not a separate candidate.
def _tpe(seed: int, **kwargs: Any) -> Any:
    """TPESampler(seed, **kwargs); Optuna 5 deprecates ``gamma`` (FutureWarning): quiet."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return optuna.samplers.TPESampler(seed=seed, **kwargs)


# Candidates run on the even tasks (``--choice``; the rule picks among them). Retired ones
# (earlier rounds' losers, PREVIOUS) are kept in results/choice/: candidates.md has every
# round, table_17x10.md round 1 in detail, table.md the last `make bench-choice`.
CANDIDATES: dict[str, Callable[[int], sim.Method]] = {
    SHIPPED: sim.tuner_method,
    STARTUP10: lambda s: sim.tuner_method(s, sampler=lambda seed: _tpe(
        seed, multivariate=False, n_ei_candidates=1024)),
}
# What methods were called in runs made before (--reuse): names 1, the first round's (when
# multivariate TPE shipped); names 2, the second round's (independent TPE, grace 1 shipped);
# names 3, rounds 3-5 (independent TPE, grace 2, 24 EI candidates shipped); names 4, round 6
# (1024 candidates shipped); names 5, round 7 (256 shipped, then withdrawn); names 6, round 8
# (10 start-up trials shipped).
RENAMED = {
    1: {"ours, as shipped (TPE, ASHA grace 1, rf 3)": PREVIOUS,
        "ours, TPE multivariate=False": "ours, as shipped (independent TPE, ASHA grace 1, rf 3)",
        "ours, TPE multivariate=False, grace 3": "ours, grace 3",
        "ours, grace 2": "ours, multivariate TPE, grace 2",
        "ours, grace 3": "ours, multivariate TPE, grace 3",
        "ours, grace 4": "ours, multivariate TPE, grace 4",
        "ours, grace 2, 2 brackets": "ours, multivariate TPE, grace 2, 2 brackets",
        "ours, grace 3, 2 brackets": "ours, multivariate TPE, grace 3, 2 brackets",
        "ours, TPE n_startup_trials=30": "ours, multivariate TPE, n_startup_trials=30",
        "ours, TPE + 1/3 random configurations": "ours, multivariate TPE + 1/3 random configurations",
        "ours, TPE gamma=min(ceil(0.25 n), 25)": "ours, multivariate TPE, gamma=min(ceil(0.25 n), 25)"},
    2: {"ours, as shipped (independent TPE, ASHA grace 1, rf 3)": "ours, grace 1",
        "ours, grace 2": "ours, as shipped (independent TPE, ASHA grace 2, rf 3)",
        "ours, reduction factor 4": "ours, grace 1, reduction factor 4",
        "ours, TPE n_startup_trials=20": "ours, grace 1, TPE n_startup_trials=20",
        "ours, TPE + 1/3 random configurations": "ours, grace 1, TPE + 1/3 random configurations"},
    3: {"ours, as shipped (independent TPE, ASHA grace 2, rf 3)": BEFORE,
        "ours, TPE n_ei_candidates=1024": "ours, as shipped (independent TPE, 1024 candidates, ASHA grace 2, rf 3)"},
    4: {"ours, as shipped (independent TPE, 1024 candidates, ASHA grace 2, rf 3)":
        "ours, TPE n_ei_candidates=1024 (shipped before)",
        "ours, TPE n_ei_candidates=256": "ours, as shipped (independent TPE, 256 candidates, ASHA grace 2, rf 3)"},
    5: {"ours, TPE n_ei_candidates=1024 (shipped before)":
        "ours, as shipped (independent TPE, 1024 candidates, ASHA grace 2, rf 3)",
        "ours, as shipped (independent TPE, 256 candidates, ASHA grace 2, rf 3)": ROUND7},
    6: {"ours, as shipped (independent TPE, 1024 candidates, ASHA grace 2, rf 3)": STARTUP10,
        "ours, TPE n_startup_trials=5": SHIPPED},
}
ALL = {**PEERS, **CANDIDATES}

# The held-out tasks run to max_fte (20 FTE for a second K, and for the slow peers);
# choice_fte: the even (choice) tasks' budget in `--choice` (the rule reads 5, 10, 20 FTE).
QUICK = {"tasks": 4, "seeds": 3, "workers": [4], "max_fte": 20.0, "slow_seeds": 1}
FULL = {"tasks": 34, "seeds": 10, "workers": [4], "max_fte": 50.0, "choice_fte": 20.0, "slow_seeds": 2}


# --------------------------------------------------------------------------- running


def reference(tasks: list[str]) -> dict[str, dict[str, float]]:
    """Per task: the best epoch-52 accuracy of POOL random configurations and the median
    52-epoch seconds (1 FTE). Cached in lcbench_reference.json (deterministic)."""
    ref: dict[str, dict[str, float]] = {}
    if os.path.exists(REFERENCE):
        with open(REFERENCE, encoding="utf-8") as f:
            ref = json.load(f)
    missing = [t for t in tasks if t not in ref]
    for t in missing:
        acc, secs = sim.random_pool(t, POOL, seed=12345)
        ref[t] = {"pool_best": float(acc.max()), "fte_s": float(np.median(secs)),
                  "pool_median": float(np.median(acc))}
    if missing:
        with open(REFERENCE, "w", encoding="utf-8") as f:
            json.dump(ref, f, indent=1, sort_keys=True)
    return ref


def _job(args: tuple) -> dict:
    name, task, seed, workers, budget_s, fte_s = args
    started = time.process_time()
    np.random.seed(seed)  # Ray's ASHA picks brackets with numpy's global generator
    method = ALL[name](seed)
    trace = sim.simulate(method, sim.Task(task), workers, budget_s)
    return {"method": name, "task": task, "seed": seed, "workers": workers,
            "cost": [c / fte_s for c in trace.cost], "best": trace.best,
            "trials": trace.trials, "spent": trace.spent / fte_s,
            "cpu_s": time.process_time() - started, "budget": budget_s / fte_s, "job": args,
            "names": NAMES}


NAMES = 7  # the methods' names since round 8 (RENAMED maps older runs')
_CACHE: dict[tuple, dict] = {}
_READ_ONLY: set[tuple] = set()  # studies read from another run's file: never written back
RUNS = os.path.join(OUT, "runs.json.gz")


def _read(path: str) -> dict[tuple, dict]:
    """The studies in a runs file, by (method, task, seed, workers, budget), named as now."""
    if not os.path.exists(path):
        return {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        runs = json.load(f)
    out = {}
    for r in runs:
        for names in range(r.get("names", 1), NAMES):
            r["method"] = RENAMED[names].get(r["method"], r["method"])
        r["names"] = NAMES
        out[(r["method"], r["task"], r["seed"], r["workers"], round(r["budget"], 6))] = r
    return out


def load_cache(path: str | None = None, read_only: bool = False) -> None:
    """--reuse: studies already in results/runs.json.gz (or ``path``) are not run again."""
    runs = _read(path or RUNS)
    _CACHE.update(runs)
    if read_only:
        _READ_ONLY.update(runs)


def save_cache() -> None:
    """This run's studies into RUNS, over the same studies of earlier runs; the file's
    other studies (the choice rounds', other budgets or K) stay."""
    runs = _read(RUNS)
    runs.update((k, r) for k, r in _CACHE.items() if k not in _READ_ONLY)
    os.makedirs(os.path.dirname(RUNS), exist_ok=True)
    # mtime 0: the same studies give the same bytes, so git sees no change where there is none;
    # written beside and then renamed, so a run killed while saving leaves the last file whole
    tmp = RUNS + ".tmp"
    with open(tmp, "wb") as out, gzip.GzipFile(RUNS, "wb", fileobj=out, mtime=0) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8") as f:
        json.dump(list(runs.values()), f)
    os.replace(tmp, RUNS)


def recorded_runs(methods: tuple[str, ...], tasks: list[str], seeds: list[int], workers: int,
                  fte: float) -> list[dict]:
    """The studies of ``methods`` an earlier run left in RUNS for exactly these tasks, seeds,
    K and budget; a method missing any of them is left out."""
    runs = recorded_seeds(methods, tasks, seeds, workers, fte)
    full = {m for m in methods if sum(r["method"] == m for r in runs) == len(tasks) * len(seeds)}
    return [r for r in runs if r["method"] in full]


def recorded_seeds(methods: tuple[str, ...], tasks: list[str], seeds: list[int], workers: int,
                   fte: float) -> list[dict]:
    """Each method's studies an earlier run left in RUNS on the first of ``seeds``, in order,
    that it holds for every one of ``tasks`` (K and budget as given): the slow peers' seeds
    beyond make bench's, run apart by `python -m benchmarks.more_seeds`."""
    found = _read(RUNS)
    out = []
    for m in methods:
        for s in seeds:
            keys = [(m, t, s, workers, round(fte, 6)) for t in tasks]
            if not all(k in found for k in keys):
                break
            out += [found[k] for k in keys]
    return out


def run_jobs(jobs: list[tuple], procs: int) -> list[dict]:
    def key(j: tuple) -> tuple:
        return (j[0], j[1], j[2], j[3], round(j[4] / j[5], 6))

    out = [_CACHE[key(j)] for j in jobs if key(j) in _CACHE]
    jobs = [j for j in jobs if key(j) not in _CACHE]
    pinned = [j for j in jobs if j[0] in PINNED]
    others = [j for j in jobs if j[0] not in PINNED]
    if pinned:
        print(f"  {len(pinned)} studies in {os.path.relpath(pinned_peers.PYTHON, os.path.dirname(HERE))}",
              flush=True)
        for res in pinned_peers.run_elsewhere(pinned, procs):
            out.append(res)
            _CACHE[key(res["job"])] = res
        if others:
            save_cache()
    done = 0
    started = time.perf_counter()
    # Optuna's TPE with log Phi over arrays: the same bits, about half the CPU of our studies.
    with ProcessPoolExecutor(max_workers=procs, initializer=log_ndtr.install) as pool:
        for res in pool.map(_job, others, chunksize=1):
            out.append(res)
            _CACHE[key(res["job"])] = res
            done += 1
            if done % 200 == 0:
                save_cache()  # --reuse resumes an interrupted run from here
            if done % max(1, len(others) // 5) == 0 or done == len(others):
                print(f"  {done}/{len(others)} studies, {time.perf_counter() - started:.0f} s",
                      flush=True)
    if jobs:  # what ran is saved; a run that found every study saved writes nothing
        save_cache()
    return out


# --------------------------------------------------------------------------- analysis


def best_at(run: dict, budgets: np.ndarray) -> np.ndarray:
    cost, best = np.asarray(run["cost"]), np.asarray(run["best"])
    idx = np.searchsorted(cost, budgets, side="right") - 1
    out = np.where(idx >= 0, best[np.maximum(idx, 0)], -np.inf)
    return np.where(budgets <= run["spent"] + 1e-9, out, np.nan)


def regret_cube(runs: list[dict], methods: list[str], tasks: list[str], seeds: list[int],
                ref: dict[str, float], workers: int, budgets: np.ndarray) -> np.ndarray:
    """regret[m, t, s, b] in points (NaN where a run is missing)."""
    cube = np.full((len(methods), len(tasks), len(seeds), len(budgets)), np.nan)
    mi = {m: i for i, m in enumerate(methods)}
    ti = {t: i for i, t in enumerate(tasks)}
    si = {s: i for i, s in enumerate(seeds)}
    for r in runs:
        if r["workers"] != workers or r["method"] not in mi or r["task"] not in ti \
                or r["seed"] not in si:
            continue
        b = best_at(r, budgets)
        reg = ref[r["task"]] - np.where(np.isneginf(b), 0.0, b)
        cube[mi[r["method"]], ti[r["task"]], si[r["seed"]]] = reg
    return cube


def hit_cost(run: dict, target: float) -> float:
    for c, b in zip(run["cost"], run["best"]):
        if b >= target:
            return c
    return math.inf


def ranks(per_task: np.ndarray) -> np.ndarray:
    """per_task[m, t] regrets -> ranks[m, t] (1 = best, ties averaged)."""
    from scipy.stats import rankdata

    return np.vstack([rankdata(per_task[:, t]) for t in range(per_task.shape[1])]).T


def boot_ci(x: np.ndarray, reps: int = 10000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(reps, len(x)))
    means = x[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def holm(pvalues: list[float]) -> list[float]:
    order = np.argsort(pvalues)
    adj = [0.0] * len(pvalues)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - k) * pvalues[i]))
        adj[i] = running
    return adj


# Studentized range / sqrt(2) at alpha 0.05 (Demsar 2006, Table 5), k = 2..15.
_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102,
        10: 3.164, 11: 3.219, 12: 3.268, 13: 3.313, 14: 3.354, 15: 3.391}


def critical_difference(k: int, n: int) -> float:
    return _Q05[k] * math.sqrt(k * (k + 1) / (6 * n))


def analyse(runs: list[dict], methods: list[str], tasks: list[str], seeds: list[int],
            ref: dict[str, float], workers: int, ours: str, max_fte: float,
            unranked: tuple[str, ...] = ()) -> dict:
    from scipy.stats import friedmanchisquare, wilcoxon

    budgets = np.array([b for b in REPORT_AT if b <= max_fte])
    cube = regret_cube(runs, methods, tasks, seeds, ref, workers, budgets)
    grid = GRID[max_fte >= GRID]
    curves = regret_cube(runs, methods, tasks, seeds, ref, workers, grid)
    present = [i for i, m in enumerate(methods) if not np.all(np.isnan(cube[i]))]
    out: dict[str, Any] = {"budgets": budgets.tolist(), "methods": methods, "tasks": tasks,
                           "seeds": seeds, "workers": workers, "ours": ours, "by_budget": {}}
    # anytime curves: mean over tasks of the per-task seed-mean, bootstrap CI over tasks
    out["curves"] = {"grid": grid.tolist()}
    for i in present:
        per_task = np.nanmean(curves[i], axis=1)  # [t, g]
        mean, lo, hi = [], [], []
        for g in range(len(grid)):
            col = per_task[:, g]
            col = col[~np.isnan(col)]
            if len(col) == 0:
                mean.append(math.nan), lo.append(math.nan), hi.append(math.nan)
                continue
            a, b = boot_ci(col, reps=2000)
            mean.append(float(col.mean())), lo.append(a), hi.append(b)
        out["curves"][methods[i]] = {"mean": mean, "lo": lo, "hi": hi}
    # Ranked: the methods run on every task and seed, but not our earlier defaults (read from
    # an earlier run: ranked with ours, they would only split our places among themselves).
    ranked = [i for i in present if methods[i] not in unranked]
    full = [i for i in ranked if not np.any(np.isnan(cube[i]))]  # every task and seed
    oi = methods.index(ours)
    for bi, b in enumerate(budgets):
        per_task = np.nanmean(cube[:, :, :, bi], axis=2)  # [m, t]
        row: dict[str, Any] = {"mean_regret": {}, "ci": {}, "median_regret": {}}
        for i in present:
            vals = per_task[i][~np.isnan(per_task[i])]
            row["mean_regret"][methods[i]] = float(vals.mean())
            row["ci"][methods[i]] = boot_ci(vals)
            row["median_regret"][methods[i]] = float(np.nanmedian(cube[i, :, :, bi]))
        # ranks and Friedman over the methods run on every task and seed
        rk = ranks(per_task[full])
        row["mean_rank"] = {methods[i]: float(rk[j].mean()) for j, i in enumerate(full)}
        if len(full) >= 3:
            stat, p = friedmanchisquare(*[per_task[i] for i in full])
            row["friedman"] = {"stat": float(stat), "p": float(p)}
        row["cd"] = critical_difference(len(full), len(tasks)) if len(full) in _Q05 else None
        # every method, the slow peers too, ranked on the seeds all of them ran
        common = ~np.any(np.isnan(cube[ranked, :, :, bi]), axis=(0, 1))  # [s]
        if common.any() and len(ranked) > len(full):
            sub = np.nanmean(cube[ranked][:, :, common, bi], axis=2)
            rk_all = ranks(sub)
            row["mean_rank_all"] = {methods[i]: float(rk_all[j].mean()) for j, i in enumerate(ranked)}
            row["seeds_all"] = [seeds[k] for k in np.flatnonzero(common)]
            row["cd_all"] = critical_difference(len(ranked), len(tasks)) if len(ranked) in _Q05 else None
        # paired: ours - peer, per task (seed-mean), bootstrap over tasks, Wilcoxon, Holm
        pairs = {}
        for i in present:
            if i == oi:
                continue
            both = ~np.isnan(cube[i, :, :, bi]) & ~np.isnan(cube[oi, :, :, bi])  # same seeds
            diff = np.where(both, cube[oi, :, :, bi] - cube[i, :, :, bi], np.nan)
            ok = both.any(axis=1)
            d = np.nanmean(diff[ok], axis=1)
            if len(d) < 2:
                continue
            try:
                p = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
            except ValueError:
                p = 1.0
            pairs[methods[i]] = {"diff": float(d.mean()), "ci": boot_ci(d), "p": p, "n": int(ok.sum())}
        adj = holm([v["p"] for v in pairs.values()])
        for v, a in zip(pairs.values(), adj):
            v["p_holm"] = a
        row["pairs"] = pairs
        # each method's seed-mean regret per task (None where it did not run the task)
        row["per_task"] = {methods[i]: [None if math.isnan(v) else float(v) for v in per_task[i]]
                           for i in present}
        # per-task: how far ours is behind the best peer, on the seeds each peer ran
        peers = [i for i in present if i != oi and methods[i] in PEERS]
        if peers:
            behind = []
            for i in peers:
                d = cube[oi, :, :, bi] - cube[i, :, :, bi]  # NaN where either did not run
                behind.append(np.nanmean(d, axis=1))
            gap = np.nanmax(np.vstack(behind), axis=0)
            row["worst_task_gap"] = {"gap": float(np.nanmax(gap)),
                                     "task": tasks[int(np.nanargmax(gap))],
                                     "tasks_over_1": int(np.sum(gap > 1.0))}
        out["by_budget"][f"{b:g}"] = row
    # success and ERT within delta points of the reference, by the largest budget
    out["success"] = {}
    cap = float(budgets[-1])
    for delta in (1.0, 0.5):
        for i in present:
            hits, spend, n = 0, 0.0, 0
            hits20 = 0
            for r in runs:
                if r["method"] != methods[i] or r["workers"] != workers or r["task"] not in tasks \
                        or r["seed"] not in seeds:
                    continue
                n += 1
                c = hit_cost(r, ref[r["task"]] - delta)
                if c <= cap:
                    hits += 1
                    spend += c
                else:
                    spend += cap
                if c <= GOAL_BUDGET:
                    hits20 += 1
            out["success"].setdefault(f"{delta:g}", {})[methods[i]] = {
                "n": n, "rate": hits / n if n else math.nan,
                "rate_20": hits20 / n if n else math.nan,
                "ert": spend / hits if hits else math.inf}
    return out


# --------------------------------------------------------------------------- choosing


def choose(analysis: dict) -> str:
    """The rule that picks our default on the even tasks, fixed before any held-out run:
    the candidate with the lowest mean regret averaged over 5, 10 and 20 FTE."""
    scores = {}
    for m in CANDIDATES:
        vals = [analysis["by_budget"][f"{b:g}"]["mean_regret"].get(m) for b in (5.0, 10.0, 20.0)
                if f"{b:g}" in analysis["by_budget"]]
        if vals and all(v is not None for v in vals):
            scores[m] = float(np.mean(vals))
    return min(scores, key=scores.__getitem__)


# --------------------------------------------------------------------------- figures


def plot_curves(analysis: dict, path: str, title: str, highlight: set[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.array(analysis["curves"]["grid"])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for m, c in analysis["curves"].items():
        if m == "grid":
            continue
        lw = 2.4 if m in highlight else 1.2
        line, = ax.plot(grid, c["mean"], lw=lw, label=m)
        ax.fill_between(grid, c["lo"], c["hi"], alpha=0.15, color=line.get_color())
    for b in REPORT_AT:
        if b <= grid[-1]:
            ax.axvline(b, color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("budget spent (full-training equivalents, K x virtual wall time)")
    ax.set_ylabel("regret (points of val. accuracy), mean over tasks")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cd(analysis: dict, budget: float, path: str, title: str) -> str:
    """Critical-difference diagram (Demsar 2006): mean ranks, Nemenyi CD at 0.05."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = analysis["by_budget"][f"{budget:g}"]
    items = sorted(row["mean_rank"].items(), key=lambda kv: kv[1])
    k = len(items)
    fig, ax = plt.subplots(figsize=(9, 0.45 * k + 1.6))
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(-k - 1, 1.5)
    ax.axhline(0, color="black", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    for j, (m, rank) in enumerate(items):
        y = -(j + 1) * 0.9
        ax.plot([rank, rank], [0, y], color="C0", lw=0.8)
        ax.plot(rank, 0, "o", color="C0", ms=4)
        ax.text(rank + 0.05, y, f"{m} ({rank:.2f})", fontsize=7, va="center")
    if row.get("cd"):
        ax.plot([1, 1 + row["cd"]], [1.1, 1.1], color="red", lw=2)
        ax.text(1 + row["cd"] / 2, 1.25, f"CD = {row['cd']:.2f}", color="red", ha="center",
                fontsize=8)
        # cliques: methods whose ranks are within CD of each other
        ranks_ = [r for _, r in items]
        y = 0.65
        for a in range(k):
            b = max(j for j in range(k) if ranks_[j] - ranks_[a] <= row["cd"])
            if b > a and (a == 0 or b > max(j for j in range(k) if ranks_[j] - ranks_[a - 1] <= row["cd"])):
                ax.plot([ranks_[a] - 0.03, ranks_[b] + 0.03], [y, y], color="grey", lw=3, alpha=0.6)
                y -= 0.12
    fr = row.get("friedman")
    ax.set_title(f"{title}; Friedman p = {fr['p']:.2g}" if fr else title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--max-fte", type=float)
    parser.add_argument("--workers", help="comma-separated K values, e.g. 4,1")
    parser.add_argument("--slow-seeds", type=int)
    parser.add_argument("--reuse", action="store_true",
                        help="skip studies already in results/runs.json.gz (same budget)")
    parser.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--choice", action="store_true",
                        help="the even (choice) tasks only, as the protocol's first phase: "
                        "studies in results/runs.json.gz are read, never written; new ones go "
                        "to results/choice/ with the analysis and a table; no held-out task runs")
    args = parser.parse_args(argv)
    if args.choice:
        return choice_main(args)
    plan = dict(QUICK if args.quick else FULL)
    for key in ("tasks", "seeds", "max_fte", "slow_seeds"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    if args.workers:
        plan["workers"] = [int(k) for k in args.workers.split(",")]
    from benchmarks.lcbench import shared

    all_tasks = list(shared().tasks)
    if plan["tasks"] < len(all_tasks):  # spread over the list, keeping even/odd halves
        pick = np.linspace(0, len(all_tasks) - 1, plan["tasks"]).round().astype(int)
        idx = sorted(set(pick.tolist()))
    else:
        idx = list(range(len(all_tasks)))
    odd = [all_tasks[i] for i in idx if i % 2 == 1]
    seeds = list(range(plan["seeds"]))
    slow_seeds = seeds[:plan["slow_seeds"]]
    global OUT, RUNS
    if args.quick:  # never mixes with (or overwrites) the full run's results
        OUT = os.path.join(HERE, "results", "quick")
        RUNS = os.path.join(OUT, "runs.json.gz")
    if args.reuse:
        load_cache()
    started = time.perf_counter()
    ref_info = reference(odd)
    os.makedirs(OUT, exist_ok=True)
    result: dict[str, Any] = {"plan": plan, "odd": odd, "chosen": SHIPPED, "timings": {}}
    for workers in plan["workers"]:
        k_max = plan["max_fte"] if workers == plan["workers"][0] else min(plan["max_fte"], 20.0)
        # The held-out (odd) tasks: the peers, ours as shipped and the default before it.
        # Choosing a default is the separate first phase (`--choice`, `make bench-choice`).
        t0 = time.perf_counter()
        held = [m for m in PEERS if m not in SLOW_PEERS] + [SHIPPED]
        jobs = [(m, t, s, workers, k_max * ref_info[t]["fte_s"], ref_info[t]["fte_s"])
                for m in held for t in odd for s in seeds]
        jobs = [(m, t, s, workers, min(k_max, GOAL_BUDGET) * ref_info[t]["fte_s"], ref_info[t]["fte_s"])
                for m in SLOW_PEERS for t in odd for s in slow_seeds] + jobs
        print(f"K={workers}: held-out tasks ({len(odd)}), {len(jobs)} studies", flush=True)
        runs_odd = run_jobs(jobs, args.procs)
        runs_odd += recorded_seeds(SLOW_PEERS, odd, seeds[len(slow_seeds):], workers,
                                   min(k_max, GOAL_BUDGET))
        recorded = recorded_runs(EARLIER, odd, seeds, workers, k_max)
        earlier = sorted({r["method"] for r in recorded})
        result.setdefault("recorded", {})[f"K{workers}"] = earlier
        held += earlier
        runs_odd += recorded
        result["timings"][f"odd_K{workers}"] = time.perf_counter() - t0
        ref_odd = _ref(ref_info, runs_odd, odd)
        an_odd = analyse(runs_odd, [*held, *SLOW_PEERS], odd, seeds, ref_odd, workers, SHIPPED, k_max,
                         unranked=EARLIER)
        cpu: dict[str, list[float]] = {}
        for r in runs_odd:
            cpu.setdefault(r["method"], []).append(r["cpu_s"])
        tag = f"K{workers}"
        result[tag] = {
            "slow_seeds": {m: len({r["seed"] for r in runs_odd if r["method"] == m})
                           for m in SLOW_PEERS},
            "odd": an_odd, "ref_odd": ref_odd,
            "cpu_s": {m: float(np.mean(v)) for m, v in cpu.items()},
            "trials": {m: float(np.mean([r["trials"] for r in runs_odd if r["method"] == m]))
                       for m in cpu},
            "figures": {
                "odd": plot_curves(an_odd, os.path.join(OUT, f"regret_heldout_{tag}.png"),
                                   f"Held-out tasks ({len(odd)}), K={workers}, {len(seeds)} seeds: "
                                   "mean regret, 95% bootstrap CI over tasks", {SHIPPED}),
                "cd5": plot_cd(an_odd, 5.0, os.path.join(OUT, f"cd_heldout_{tag}_5fte.png"),
                               f"Held-out, K={workers}, 5 FTE: mean rank (1 = best)"),
                "cd20": plot_cd(an_odd, min(k_max, 20.0), os.path.join(OUT, f"cd_heldout_{tag}_20fte.png"),
                                f"Held-out, K={workers}, {min(k_max, 20.0):g} FTE: mean rank (1 = best)"),
            },
        }
    result["wall_s"] = time.perf_counter() - started
    with open(os.path.join(OUT, "analysis.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=_jsonable)
    for workers in plan["workers"]:
        print("\n".join(summary_table(result, workers)))
    return result


def choice_main(args: argparse.Namespace) -> dict:
    """--choice: phase 1 of the protocol (even tasks, K = the plan's first, every method
    but the slow peers, to choice_fte) and the rule's pick; nothing held out runs."""
    global RUNS
    plan: dict[str, Any] = dict(FULL)
    for key in ("tasks", "seeds"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    from benchmarks.lcbench import shared

    all_tasks = list(shared().tasks)
    if plan["tasks"] < len(all_tasks):
        pick = np.linspace(0, len(all_tasks) - 1, plan["tasks"]).round().astype(int)
        idx = sorted(set(pick.tolist()))
    else:
        idx = list(range(len(all_tasks)))
    even = [all_tasks[i] for i in idx if i % 2 == 0]
    seeds = list(range(plan["seeds"]))
    workers = plan["workers"][0]
    fte = min(plan["max_fte"], plan["choice_fte"])
    out = os.path.join(OUT, "choice")
    load_cache(RUNS, read_only=True)  # the full protocol's studies, same code and budgets
    RUNS = os.path.join(out, "runs.json.gz")
    load_cache(RUNS)
    started = time.perf_counter()
    ref_info = reference(even)
    jobs = [(m, t, s, workers, fte * ref_info[t]["fte_s"], ref_info[t]["fte_s"])
            for m in ALL if m not in SLOW_PEERS for t in even for s in seeds]
    print(f"K={workers}: even tasks ({len(even)}), {len(jobs)} studies", flush=True)
    runs = run_jobs(jobs, args.procs)
    ref = _ref(ref_info, runs, even)
    methods = [m for m in ALL if m not in SLOW_PEERS]
    an = analyse(runs, methods, even, seeds, ref, workers, SHIPPED, fte)
    chosen = choose(an)
    cpu = {m: float(np.mean([r["cpu_s"] for r in runs if r["method"] == m])) for m in methods}
    trials = {m: float(np.mean([r["trials"] for r in runs if r["method"] == m])) for m in methods}
    result = {"plan": plan, "even": even, "seeds": seeds, "workers": workers, "fte": fte,
              "chosen": chosen, "analysis": an, "ref": ref, "cpu_s": cpu, "trials": trials,
              "wall_s": time.perf_counter() - started}
    os.makedirs(out, exist_ok=True)
    # The last choice run's outputs (round 1's, 17x10 with all its candidates, are kept apart).
    with open(os.path.join(out, "analysis.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=_jsonable)
    lines = choice_table(an, chosen, cpu, trials)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    plot_curves(an, os.path.join(out, "regret_choice.png"),
                f"Choice tasks ({len(even)}), K={workers}, {len(seeds)} seeds: peers and our "
                "candidates", {chosen, SHIPPED})
    print("\n".join(lines))
    print(f"chosen on even tasks: {chosen}")
    return result


def choice_table(an: dict, chosen: str, cpu: dict[str, float],
                 trials: dict[str, float]) -> list[str]:
    """Mean regret [95% CI] per budget, the rule's score (mean of 5, 10, 20 FTE), mean rank
    and the paired difference to ours as shipped at the largest budget."""
    budgets = an["budgets"]
    top = f"{budgets[-1]:g}"
    lines = ["| method | " + " | ".join(f"{b:g} FTE" for b in budgets)
             + f" | score | mean rank at {top} FTE | method minus shipped at {top} FTE [95% CI],"
             " p (Holm) | CPU s / study | trials / study |",
             "| --- |" + " ---: |" * (len(budgets) + 5)]
    for m in an["methods"]:
        cells = []
        for b in budgets:
            row = an["by_budget"][f"{b:g}"]
            lo, hi = row["ci"][m]
            cells.append(f"{row['mean_regret'][m]:.2f} [{lo:.2f}, {hi:.2f}]")
        score = float(np.mean([an["by_budget"][f"{b:g}"]["mean_regret"][m] for b in (5.0, 10.0, 20.0)]))
        row = an["by_budget"][top]
        pair = row["pairs"].get(m)
        paired = "-" if pair is None else (
            f"{-pair['diff']:+.2f} [{-pair['ci'][1]:+.2f}, {-pair['ci'][0]:+.2f}], "
            f"{pair['p']:.2g} ({pair['p_holm']:.2g})")
        name = m + (" **(chosen)**" if m == chosen else "") + ("" if m in CANDIDATES else " (peer)")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {score:.2f} | "
                     f"{row['mean_rank'][m]:.2f} | {paired} | {cpu[m]:.2f} | {trials[m]:.0f} |")
    return lines


def _ref(info: dict, runs: list[dict], tasks: list[str]) -> dict[str, float]:
    """The fixed reference: the best of the random pool at epoch 52 and of every run."""
    ref = {t: info[t]["pool_best"] for t in tasks}
    for r in runs:
        if r["best"]:
            ref[r["task"]] = max(ref[r["task"]], max(r["best"]))
    return ref


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return str(x)


def summary_table(result: dict, workers: int) -> list[str]:
    return [f"Held-out tasks, K={workers}: mean regret (points) [95% CI] / mean rank",
            *regret_table(result[f"K{workers}"]["odd"])]


def regret_table(an: dict) -> list[str]:
    """Mean regret [95% CI] / mean rank per method and budget, as a markdown table; "-"
    where a method did not run at a budget."""
    budgets = an["budgets"]
    lines = ["| method | " + " | ".join(f"{b:g} FTE" for b in budgets) + " |",
             "| --- |" + " ---: |" * len(budgets)]
    for m in an["methods"]:
        cells = []
        for b in budgets:
            row = an["by_budget"][f"{b:g}"]
            if m not in row["mean_regret"] or math.isnan(row["mean_regret"][m]):
                cells.append("-")
                continue
            lo, hi = row["ci"][m]
            rk = row["mean_rank"].get(m)
            cells.append(f"{row['mean_regret'][m]:.2f} [{lo:.2f}, {hi:.2f}]"
                         + (f" / {rk:.2f}" if rk is not None else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines

if __name__ == "__main__":
    main()
