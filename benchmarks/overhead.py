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


def run_generator(n: int, root: str, i: int, optuna: bool) -> float:
    """Raw Ray Tune, FIFO: OptunaSearch against Ray's basic variant generator."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    search = (OptunaSearch(space, metric="score", mode="max", seed=0) if optuna
              else BasicVariantGenerator(random_state=0))
    param_space = None if optuna else {"x": tune.uniform(0.0, 1.0),
                                       "k": tune.choice(["a", "b", "c"])}
    start = time.perf_counter()
    tune.Tuner(
        trivial, param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=n, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=os.path.join(root, "gen"),
                                  name=f"gen{int(optuna)}{i}", verbose=0)).fit()
    return time.perf_counter() - start


def per_trial_costs(n: int, root: str) -> list[dict]:
    """Driver-side cost per trial of our MLflow logging and of Optuna's journal storage."""
    import optuna

    from tuner.engine import optuna_storage
    from tuner.tracking import Tracker

    rows = []
    tracker = Tracker(f"sqlite:///{root}/costs.db", "costs")
    parent = tracker.start_study("costs", {"metric": "score"}, {})
    start = time.perf_counter()
    for i in range(n):  # what the driver's event loop spends: the writes are queued
        tracker.start_trial(parent, "costs", f"t{i}", {"x": 0.5, "k": "a"})
        tracker.log_metrics(f"t{i}", {"score": 0.5, "tuner.cost_usd": 1e-6}, 1)
        tracker.end_run(f"t{i}", "completed", {"tuner.iterations": 1})
    queued = time.perf_counter() - start
    tracker.flush()
    written = time.perf_counter() - start
    rows.append({"what": "MLflow: driver time to queue a trial's run (start, 1 result, end)",
                 "ms_per_trial": 1000 * queued / n})
    rows.append({"what": "MLflow: background thread writing it to sqlite",
                 "ms_per_trial": 1000 * (written - queued) / n})
    for label, storage in (("in memory (Ray's default)", None),
                           ("journal file (ours, survives the driver)",
                            optuna_storage(os.path.join(root)))):
        study = optuna.create_study(storage=storage, study_name=f"s{len(rows)}", direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=0))
        start = time.perf_counter()
        for _ in range(n):
            trial = study.ask()
            space(trial)
            study.tell(trial, 0.5)
        rows.append({"what": f"Optuna ask + tell, TPE, storage {label}",
                     "ms_per_trial": 1000 * (time.perf_counter() - start) / n})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    times: dict[str, list[float]] = {"ray tune by hand": [], "tuner.tune": []}
    gen: dict[str, list[float]] = {"basic variant generator": [], "OptunaSearch": []}
    with tempfile.TemporaryDirectory() as root:
        run_ours(5, root, -1)  # warm: first imports, MLflow's schema
        for i in range(args.repeats):  # alternate, so drift hits both alike
            times["ray tune by hand"].append(run_raw(args.trials, root, i))
            times["tuner.tune"].append(run_ours(args.trials, root, i))
            gen["basic variant generator"].append(run_generator(args.trials, root, i, False))
            gen["OptunaSearch"].append(run_generator(args.trials, root, i, True))
        costs = per_trial_costs(args.trials, root)
    ray.shutdown()
    rows = _rows(times, args.trials, "ray tune by hand")
    gen_rows = _rows(gen, args.trials, "basic variant generator")
    print(f"\nOverhead: {args.trials} trivial trials, median of {args.repeats} alternated runs")
    for table in (rows, gen_rows):
        print(f"{'method':24} {'median s':>9} {'trials/s':>9} {'ratio':>6}")
        for r in table:
            print(f"{r['method']:24} {r['median_s']:9.1f} {r['trials_per_s']:9.1f} "
                  f"{r['ratio']:6.2f}")
    for c in costs:
        print(f"{c['what']:70} {c['ms_per_trial']:7.2f} ms/trial")
    return {"tuner": rows, "generator": gen_rows, "costs": costs, "trials": args.trials,
            "repeats": args.repeats}


def _rows(times: dict[str, list[float]], trials: int, base_name: str) -> list[dict]:
    base = statistics.median(times[base_name])
    return [{"method": m, "trials": trials, "median_s": statistics.median(t),
             "trials_per_s": trials / statistics.median(t),
             "ratio": statistics.median(t) / base, "runs": len(t)} for m, t in times.items()]


if __name__ == "__main__":
    main()
