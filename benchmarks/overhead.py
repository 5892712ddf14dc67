"""Overhead: N trivial trials through `tuner.tune` and through Ray Tune wired by hand
(the same OptunaSearch + ASHA, actor reuse), alternated in one run on one local Ray.

Prints a table and returns its rows; it asserts nothing (these machines are noisy:
read the ratio of medians measured side by side).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0},
         "k": {"type": "categorical", "choices": ["a", "b", "c"]}}


def trivial(config):
    from ray import tune

    tune.report({"score": config["x"]})


def space(trial) -> None:
    """The same space, written by hand as Ray's OptunaSearch docs show."""
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_categorical("k", ["a", "b", "c"])


def run_ours(n: int, root: str, i: int) -> float:
    import tuner

    start = time.perf_counter()
    tuner.tune(trivial, SPACE, metric="score", num_samples=n, max_t=1, grace_period=1,
               storage_path=os.path.join(root, "ours"), name=f"ours{i}",
               mlflow_uri=f"sqlite:///{root}/mlflow.db", verbose=False)
    return time.perf_counter() - start


def run_raw(n: int, root: str, i: int) -> float:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    start = time.perf_counter()
    tune.Tuner(
        trivial,
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space, metric="score", mode="max", seed=0),
            scheduler=ASHAScheduler(metric="score", mode="max", max_t=1, grace_period=1),
            num_samples=n, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=os.path.join(root, "raw"), name=f"raw{i}",
                                  verbose=0)).fit()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    times: dict[str, list[float]] = {"ray tune by hand": [], "tuner.tune": []}
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.repeats):  # alternate, so drift hits both alike
            times["ray tune by hand"].append(run_raw(args.trials, root, i))
            times["tuner.tune"].append(run_ours(args.trials, root, i))
    ray.shutdown()
    base = statistics.median(times["ray tune by hand"])
    rows = [{"method": m, "trials": args.trials, "median_s": statistics.median(t),
             "trials_per_s": args.trials / statistics.median(t),
             "ratio": statistics.median(t) / base, "runs": len(t)} for m, t in times.items()]
    print(f"\nOverhead: {args.trials} trivial trials, median of {args.repeats} alternated runs")
    print(f"{'method':18} {'median s':>9} {'trials/s':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['method']:18} {r['median_s']:9.1f} {r['trials_per_s']:9.1f} {r['ratio']:6.2f}")
    return rows


if __name__ == "__main__":
    main()
