"""Real compute: the digits MLP example (scikit-learn, one epoch per iteration, plus a
per-epoch sleep standing in for an expensive epoch), ``tuner.tune`` (TPE + ASHA) against
FIFO random search in Ray Tune, alternated on one local Ray.

Dollars: ours from the study's cost meter; random search's from the same formula the
meter applies (worker seconds per iteration x the catalog's hourly price x the trial's
share of the node), as it has no meter. Both nodes are the default unlabelled local node,
priced as an m5.large (ours on spot, as a spot cluster would run it; random search on
on-demand, and ours' on-demand equivalent shown beside it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INSTANCE = "m5.large"


def _example():
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    import digits_mlp

    return digits_mlp


def make_trainable(epochs: int, sleep_s: float):
    example = _example()

    def digits(config: dict) -> None:
        example.train({**config, "epochs": epochs, "epoch_sleep_s": sleep_s})
    return digits


def _random_space() -> dict:
    """The example's space as a Ray Tune user writes it (momentum unused by adam)."""
    from ray import tune

    return {"learning_rate_init": tune.loguniform(1e-4, 0.3), "alpha": tune.loguniform(1e-6, 0.1),
            "width": tune.lograndint(8, 257), "depth": tune.randint(1, 4),
            "activation": tune.choice(["relu", "tanh", "logistic"]),
            "batch_size": tune.choice([16, 32, 64, 128]), "solver": tune.choice(["adam", "sgd"]),
            "momentum": tune.uniform(0.5, 0.99),
            "nesterovs_momentum": tune.choice([True, False])}


def run_ours(trainable, args, seed: int, root: str) -> dict:
    import tuner

    start = time.perf_counter()
    result = tuner.tune(trainable, _example().SPACE, metric="val_accuracy",
                        num_samples=args.samples, max_t=args.epochs, grace_period=2,
                        reduction_factor=3, seed=seed, default_market="spot",
                        default_instance_type=INSTANCE, storage_path=root, name=f"ours{seed}",
                        mlflow_uri=f"sqlite:///{root}/mlflow.db", verbose=False)
    wall = time.perf_counter() - start
    return {"method": "tuner.tune (TPE + ASHA), spot", "wall_s": wall,
            "usd": result.cost["cost_usd"], "on_demand_usd": result.cost["on_demand_equiv_usd"],
            "best": result.best_metric,
            "iterations": int(result.trials["iterations"].sum())}


def run_random(trainable, args, seed: int, root: str) -> dict:
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from tuner.cost import PriceCatalog

    ray.cloudpickle.register_pickle_by_value(sys.modules["digits_mlp"])
    price = PriceCatalog.load().get(INSTANCE, "us-east-1")
    start = time.perf_counter()
    grid = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=_random_space(),
        tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(random_state=seed),
                                    num_samples=args.samples, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=root, name=f"random{seed}", verbose=0)).fit()
    wall = time.perf_counter() - start
    last = [r.metrics for r in grid if r.metrics]  # each trial's last result
    seconds = sum(m["time_total_s"] for m in last)
    share = 1 / price.vcpus  # one CPU of the node, as the meter charges a trial
    usd = seconds * price.on_demand_usd_hour / 3600 * share
    return {"method": "Ray Tune FIFO random search, on-demand", "wall_s": wall, "usd": usd,
            "on_demand_usd": usd, "best": max(m["val_accuracy"] for m in last),
            "iterations": sum(m["training_iteration"] for m in last)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sleep", type=float, default=0.1, help="seconds slept per epoch")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    trainable = make_trainable(args.epochs, args.sleep)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tuner-bench-real-") as root:
        for seed in range(args.seeds):
            for run in (run_random, run_ours):
                r = run(trainable, args, seed, root)
                runs.append(r)
                print(f"  seed {seed} {r['method']:40} best {r['best']:.4f} ${r['usd']:.6f} "
                      f"{r['wall_s']:.1f} s", flush=True)
    ray.shutdown()
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        rs = [r for r in runs if r["method"] == method]
        rows.append({"method": method, "runs": len(rs),
                     **{k: statistics.median(r[k] for r in rs)
                        for k in ("wall_s", "usd", "on_demand_usd", "best", "iterations")}})
    base = rows[0]
    for r in rows:
        r["x_random_usd"] = r["usd"] / base["usd"]
        r["x_random_wall"] = r["wall_s"] / base["wall_s"]
    print("\nReal compute: digits MLP")
    print("\n".join(table(rows)))
    return {"rows": rows, "args": vars(args)}


def table(rows: list[dict]) -> list[str]:
    lines = ["| method | runs | median wall s | x random wall | iterations run | $ (meter) | "
             "$ at on-demand | x random $ | best val_accuracy |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['runs']} | {r['wall_s']:.1f} | "
                     f"{r['x_random_wall']:.2f} | {r['iterations']:.0f} | {r['usd']:.6f} | "
                     f"{r['on_demand_usd']:.6f} | {r['x_random_usd']:.3f} | {r['best']:.4f} |")
    return lines


if __name__ == "__main__":
    main()
