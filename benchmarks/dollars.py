"""Dollars to accuracy on LCBench: ``tuner.tune`` against what a user would run instead.

Every Ray method runs real Ray Tune trials that report the surrogate's learning curve one
epoch at a time, sleeping ``--time-scale`` x the epoch's simulated seconds, so trials end
in a realistic order. A trial's dollars are its simulated seconds x the catalog's hourly
price of one instance (spot for ours, on-demand for the others). Each report is logged
with its wall time; replaying them in that order gives each method's spend and the best
accuracy it had seen after every epoch. Reports, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.lcbench import EPOCHS, SPACE, shared

TASKS = ("3945", "7593", "34539", "126025", "146212", "167168", "168330", "189906")
INSTANCE = "m5.large"
OURS = "tuner.tune (TPE + ASHA), spot"
RANDOM = "random search, full budget, on-demand"
TPE_FULL = "TPE, no early stopping, on-demand"
BY_HAND = "Ray Tune + OptunaSearch + ASHA by hand, on-demand"
OPTUNA = "Optuna + HyperbandPruner, on-demand"
METHODS = (OURS, RANDOM, TPE_FULL, BY_HAND, OPTUNA)

def make_trainable(task: str, time_scale: float, log_path: str) -> Callable[[dict], None]:
    """A Ray Tune function trainable: train ``config`` on ``task`` epoch by epoch."""
    def lcbench(config: dict) -> None:
        from ray import tune

        from benchmarks.lcbench import shared  # by name: this module may travel by value

        params = {k: config[k] for k in SPACE}
        curve = shared().curve(task, params)
        trial = tune.get_context().get_trial_id()
        for epoch in range(1, EPOCHS + 1):
            seconds = curve.epoch_seconds(epoch)
            time.sleep(seconds * time_scale)
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"t": time.time(), "trial": trial, "epoch": epoch,
                                    "acc": float(curve.val_accuracy[epoch - 1]),
                                    "seconds": seconds, "config": params}) + "\n")
            tune.report({"val_accuracy": float(curve.val_accuracy[epoch - 1]),
                         "sim_seconds": seconds})
    return lcbench


def _tune_space() -> dict:
    """SPACE as a Ray Tune param_space (what a user of Ray Tune writes by hand)."""
    from ray import tune

    out = {}
    for name, p in SPACE.items():
        if p["type"] == "int":
            out[name] = (tune.lograndint if p.get("log") else tune.randint)(p["low"], p["high"] + 1)
        else:
            out[name] = (tune.loguniform if p.get("log") else tune.uniform)(p["low"], p["high"])
    return out


def _run_tune(trainable, num_samples: int, seed: int, root: str, name: str, *,
              optuna: bool, asha: bool) -> None:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    search = (OptunaSearch(metric="val_accuracy", mode="max", seed=seed) if optuna
              else BasicVariantGenerator(random_state=seed))
    # As Ray's PyTorch tutorial wires ASHA: grace period 1, halving, max_t = the epochs.
    scheduler = ASHAScheduler(metric="val_accuracy", mode="max", max_t=EPOCHS,
                              grace_period=1, reduction_factor=2) if asha else None
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=_tune_space(),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler,
                                    num_samples=num_samples, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=root, name=name, verbose=0)).fit()


def _run_ours(trainable, num_samples: int, seed: int, root: str, name: str) -> None:
    import tuner

    tuner.tune(trainable, SPACE, metric="val_accuracy", num_samples=num_samples,
               max_t=EPOCHS, seed=seed, default_market="spot", default_instance_type=INSTANCE,
               storage_path=root, name=name, mlflow_uri=f"sqlite:///{root}/mlflow.db",
               verbose=False)


def _run_optuna(task: str, num_samples: int, seed: int, log_path: str) -> None:
    """Optuna alone, sequential and in-process, with its Hyperband pruner."""
    import optuna

    bench, clock = shared(), [0.0]

    def objective(trial: optuna.Trial) -> float:
        params = {}
        for name, p in SPACE.items():
            suggest = trial.suggest_int if p["type"] == "int" else trial.suggest_float
            params[name] = suggest(name, p["low"], p["high"], log=p.get("log", False))
        curve = bench.curve(task, params)
        with open(log_path, "a", encoding="utf-8") as f:
            for epoch in range(1, EPOCHS + 1):
                acc, seconds = float(curve.val_accuracy[epoch - 1]), curve.epoch_seconds(epoch)
                clock[0] += seconds
                f.write(json.dumps({"t": clock[0], "trial": str(trial.number), "epoch": epoch,
                                    "acc": acc, "seconds": seconds, "config": params}) + "\n")
                trial.report(acc, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return acc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(  # Hyperband picks brackets from the study's name: fix it
        study_name=f"lcbench-{task}-{seed}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS,
                                              reduction_factor=3))
    study.optimize(objective, n_trials=num_samples)


@dataclass(frozen=True)
class Trace:
    """One study, replayed: spend and best accuracy seen after each report."""

    method: str
    task: str
    seed: int
    dollars: list[float]  # cumulative, one per report in wall-clock order
    best: list[float]  # best val_accuracy seen so far
    best_config: dict
    usd_per_second: float
    wall_s: float
    trials: int

    @property
    def total(self) -> float:
        return self.dollars[-1]

    def best_at(self, spend: float) -> float:
        seen = [b for d, b in zip(self.dollars, self.best) if d <= spend + 1e-12]
        return seen[-1] if seen else float("nan")

    def dollars_to(self, target: float) -> float | None:
        return next((d for d, b in zip(self.dollars, self.best) if b >= target), None)


def _trace(method: str, task: str, seed: int, log_path: str, usd_per_second: float,
           wall_s: float) -> Trace:
    with open(log_path, encoding="utf-8") as f:
        events = sorted((json.loads(line) for line in f), key=lambda e: e["t"])
    dollars, best, spent, top, config = [], [], 0.0, -math.inf, {}
    for e in events:
        spent += e["seconds"] * usd_per_second
        if e["acc"] > top:
            top, config = e["acc"], e["config"]
        dollars.append(spent)
        best.append(top)
    return Trace(method, task, seed, dollars, best, config, usd_per_second, wall_s,
                 len({e["trial"] for e in events}))


def run_one(method: str, task: str, seed: int, root: str, args: argparse.Namespace,
            prices: dict[str, float]) -> Trace:
    log_path = os.path.join(root, f"{abs(hash(method))}-{task}-{seed}.jsonl")
    name = f"{METHODS.index(method)}-{task}-{seed}"
    trainable = make_trainable(task, args.time_scale, log_path)
    start = time.perf_counter()
    if method == OURS:
        _run_ours(trainable, args.samples, seed, root, name)
    elif method == RANDOM:
        _run_tune(trainable, args.full_samples, seed, root, name, optuna=False, asha=False)
    elif method == TPE_FULL:
        _run_tune(trainable, args.full_samples, seed, root, name, optuna=True, asha=False)
    elif method == BY_HAND:
        _run_tune(trainable, args.samples, seed, root, name, optuna=True, asha=True)
    else:
        _run_optuna(task, args.samples, seed, log_path)
    market = "spot" if method == OURS else "on-demand"
    return _trace(method, task, seed, log_path, prices[market] / 3600,
                  time.perf_counter() - start)


def summarise(traces: list[Trace]) -> list[dict]:
    """Per method: accuracy at equal spend, dollars to the target, and the oracle ratio."""
    cells: dict[tuple[str, int], dict[str, Trace]] = {}
    for t in traces:
        cells.setdefault((t.task, t.seed), {})[t.method] = t
    per: dict[str, dict[str, list]] = {m: {"gap": [], "to": [], "reached": [], "oracle": [],
                                           "study_oracle": [],
                                           "vs_random": [], "vs_hand": [], "total": [],
                                           "wall": []} for m in METHODS}
    for cell in cells.values():
        target = max(t.best[-1] for t in cell.values()) - 1.0
        spend = min(t.total for t in cell.values())
        best_at = {m: t.best_at(spend) for m, t in cell.items()}
        top_at = max(v for v in best_at.values() if not math.isnan(v))
        # Not reaching the target: count the whole spend (a lower bound on what it takes).
        to = {m: t.dollars_to(target) for m, t in cell.items()}
        cost = {m: to[m] if to[m] is not None else t.total for m, t in cell.items()}
        bench = shared()
        for m, t in cell.items():
            p = per[m]
            p["gap"].append(top_at - best_at[m] if not math.isnan(best_at[m]) else math.nan)
            p["reached"].append(to[m] is not None)
            p["to"].append(cost[m])
            oracle = bench.curve(t.task, t.best_config).seconds_to(EPOCHS) * t.usd_per_second
            p["oracle"].append(cost[m] / oracle)
            p["study_oracle"].append(t.total / oracle)
            p["vs_random"].append(cost[m] / cost[RANDOM] if RANDOM in cost else math.nan)
            p["vs_hand"].append(cost[m] / cost[BY_HAND] if BY_HAND in cost else math.nan)
            p["total"].append(t.total)
            p["wall"].append(t.wall_s)
    rows = []
    for m in METHODS:
        p = per[m]
        if not p["to"]:
            continue
        rows.append({
            "method": m, "studies": len(p["to"]),
            "gap_at_equal_spend": statistics.median(p["gap"]),
            "reached": sum(p["reached"]),
            "usd_to_target": statistics.median(p["to"]),
            "vs_random": _geomean(p["vs_random"]), "vs_hand": _geomean(p["vs_hand"]),
            "oracle_ratio": statistics.median(p["oracle"]),
            "study_oracle_ratio": statistics.median(p["study_oracle"]),
            "usd_total": statistics.median(p["total"]),
            "wall_s": statistics.median(p["wall"])})
    return rows


def _geomean(values: list[float]) -> float:
    vals = [v for v in values if v > 0 and not math.isnan(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


def table(rows: list[dict]) -> list[str]:
    head = ("| method | studies | acc. gap at equal spend (points) | reached target | "
            "median $ to target | x random (full, on-demand) | x Ray Tune by hand | "
            "oracle ratio | whole study / oracle | median $ per study | median wall s |")
    lines = [head, "| --- " + "| ---: " * 10 + "|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['studies']} | {r['gap_at_equal_spend']:.2f} | "
            f"{r['reached']}/{r['studies']} | {r['usd_to_target']:.5f} | "
            f"{r['vs_random']:.3f} | {r['vs_hand']:.3f} | {r['oracle_ratio']:.2f} | "
            f"{r['study_oracle_ratio']:.1f} | "
            f"{r['usd_total']:.5f} | {r['wall_s']:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=len(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=64, help="trials of the early-stopping "
                        "methods")
    parser.add_argument("--full-samples", type=int, default=24, help="trials of the "
                        "full-budget methods")
    parser.add_argument("--time-scale", type=float, default=0.001,
                        help="wall seconds slept per simulated training second")
    parser.add_argument("--methods", default=",".join(str(i) for i in range(len(METHODS))))
    args = parser.parse_args(argv)
    import ray

    from tuner.cost import PriceCatalog

    price = PriceCatalog.load().get(INSTANCE, "us-east-1")
    prices = {"spot": price.spot_usd_hour, "on-demand": price.on_demand_usd_hour}
    methods = [METHODS[int(i)] for i in args.methods.split(",")]
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    traces = []
    with tempfile.TemporaryDirectory() as root:
        for task in TASKS[:args.tasks]:
            for seed in range(args.seeds):
                for method in methods:
                    t = run_one(method, task, seed, root, args, prices)
                    traces.append(t)
                    print(f"  {task} seed {seed} {method:52} best {t.best[-1]:6.2f} "
                          f"${t.total:.5f} {t.trials} trials {t.wall_s:5.1f} s", flush=True)
    ray.shutdown()
    rows = summarise(traces)
    print("\nDollars to accuracy on LCBench")
    print("\n".join(table(rows)))
    return {"rows": rows, "args": vars(args), "prices": prices, "traces": traces,
            "price_source": f"{INSTANCE} us-east-1: on-demand {price.source(_market('on-demand'))}; "
                            f"spot {price.source(_market('spot'))}"}


def plot(res: dict, path: str) -> str:
    """Best accuracy seen against dollars spent, one panel per task (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = [t for t in res["traces"] if t.seed == 0]
    tasks = list(dict.fromkeys(t.task for t in traces))
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4 * cols, 10), 3.2 * rows + 1),
                             squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        cell = [t for t in traces if t.task == task]
        top = max(t.best[-1] for t in cell)
        for t in cell:
            ax.step(t.dollars, t.best, where="post", label=t.method)
        ax.axhline(top - 1.0, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(min(top - 3, min(t.best[-1] for t in cell) - 1), top + 0.5)
        ax.set_title(f"LCBench task {task}", fontsize=9)
        ax.set_xlabel("$ spent")
        ax.set_ylabel("best val_accuracy (%)")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.14 / rows, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _market(value: str):
    from tuner.cost.catalog import Market

    return Market(value)


if __name__ == "__main__":
    main()
