"""Does the simulator agree with the real thing? ``tuner.tune`` on real local Ray (actors,
MLflow, the Optuna journal, everything) on two LCBench tasks, against the simulator
driving the same searcher and scheduler classes with the same settings.

Both run ``--samples`` trials with 2 at a time (K = 2: this machine's cores). The real
trials report the surrogate's epochs 2..52 and sleep ``--time-scale`` s per simulated
second, so they end in roughly the simulated order (Ray's own overhead of tens of ms per
trial still perturbs it). Compared: the best accuracy a study found and the iterations it
ran, per task, with a Mann-Whitney U test. Reports, asserts nothing.

    python -m benchmarks.agreement --tasks 3945,146212 --seeds 4 --samples 24
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from benchmarks import sim
from benchmarks.lcbench import SPACE

HERE = os.path.dirname(os.path.abspath(__file__))


def make_trainable(task: str, time_scale: float) -> Callable[[dict], None]:
    def lcbench(config: dict) -> None:
        from ray import tune

        from benchmarks import sim as s  # by name: this module may travel by value

        curve = s.Task(task).curve(config)
        for it in range(1, s.MAX_T + 1):
            time.sleep(s.iteration_seconds(curve, it) * time_scale)
            tune.report({s.METRIC: s.iteration_accuracy(curve, it)})
    return lcbench


def real(task: str, seed: int, samples: int, time_scale: float, root: str) -> dict:
    import tuner

    started = time.perf_counter()
    res = tuner.tune(make_trainable(task, time_scale), dict(SPACE), metric=sim.METRIC,
                     mode="max", num_samples=samples, max_t=sim.MAX_T,  # the product's defaults
                     max_concurrent_trials=2, seed=seed,
                     storage_path=root, name=f"agree-{task}-{seed}",
                     mlflow_uri=f"sqlite:///{root}/mlflow.db", verbose=False)
    return {"best": float(res.best_metric), "iterations": int(res.trials["iterations"].sum()),
            "wall_s": time.perf_counter() - started}


def simulated(task: str, seed: int, samples: int) -> dict:
    trace = sim.simulate(sim.tuner_method(seed), sim.Task(task), 2, max_trials=samples)
    return {"best": max(trace.best), "iterations": trace.iterations}


def main(argv: list[str] | None = None) -> dict:
    from scipy.stats import mannwhitneyu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="3945,146212")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--sim-seeds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--out", default=os.path.join("results", "agreement.json"),
                        help="where the rows go, relative to benchmarks/")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="agree-") as root:
        for task in args.tasks.split(","):
            reals = [real(task, s, args.samples, args.time_scale, root) for s in range(args.seeds)]
            sims = [simulated(task, s, args.samples) for s in range(args.sim_seeds)]
            rb, sb = np.array([r["best"] for r in reals]), np.array([r["best"] for r in sims])
            ri = np.array([r["iterations"] for r in reals])
            si = np.array([r["iterations"] for r in sims])
            rows.append({
                "task": task, "real_n": len(reals), "sim_n": len(sims),
                "real_best_mean": float(rb.mean()), "real_best_sd": float(rb.std(ddof=1)),
                "sim_best_mean": float(sb.mean()), "sim_best_sd": float(sb.std(ddof=1)),
                "p_best": float(mannwhitneyu(rb, sb).pvalue),
                "real_iters_mean": float(ri.mean()), "sim_iters_mean": float(si.mean()),
                "p_iters": float(mannwhitneyu(ri, si).pvalue),
                "real_wall_s": float(np.mean([r["wall_s"] for r in reals])),
                # paired by seed: the simulator with the real studies' own seeds
                "real_iters": ri.tolist(), "real_bests": rb.tolist(),
                "sim_iters_same_seeds": si[:len(reals)].tolist(),
                "sim_bests_same_seeds": sb[:len(reals)].tolist(),
                "identical": int(sum(a == b and abs(x - y) < 1e-4 for a, b, x, y in
                                     zip(ri, si, rb, sb))),
                "sim_best_same_seeds_mean": float(sb[:len(reals)].mean()),
                "sim_iters_same_seeds_mean": float(si[:len(reals)].mean())})
            print(rows[-1], flush=True)
    try:
        import ray

        ray.shutdown()
    except Exception:
        pass
    out = {"args": vars(args), "rows": rows, "argv": list(argv if argv is not None else sys.argv[1:]),
           "when": time.strftime("%Y-%m-%d %H:%M %Z")}
    path = os.path.join(HERE, args.out)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return out


def table(rows: list[dict]) -> list[str]:
    out = ["| task | real studies | simulated studies | best acc., real (mean ± sd) | "
           "best acc., simulated | Mann-Whitney p | iterations, real | iterations, simulated "
           "| p | same seeds: identical studies | same seeds: best, iterations (real / sim) "
           "| real wall s per study |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        same = (f"{r['real_best_mean']:.2f} / {r['sim_best_same_seeds_mean']:.2f}, "
                f"{r['real_iters_mean']:.0f} / {r['sim_iters_same_seeds_mean']:.0f}"
                if "identical" in r else "-")
        out.append(f"| {r['task']} | {r['real_n']} | {r['sim_n']} | {r['real_best_mean']:.2f} ± "
                   f"{r['real_best_sd']:.2f} | {r['sim_best_mean']:.2f} ± {r['sim_best_sd']:.2f} | "
                   f"{r['p_best']:.2f} | {r['real_iters_mean']:.0f} | {r['sim_iters_mean']:.0f} | "
                   f"{r['p_iters']:.2f} | {r.get('identical', '-')}/{r['real_n']} | {same} | "
                   f"{r['real_wall_s']:.0f} |")
    return out


if __name__ == "__main__":
    main()
