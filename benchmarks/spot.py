"""Spot economics: one small study on the local spot cluster under the market simulator.

For each preemption rate (per node-hour, simulated time on the cluster's 60x clock), the
same study runs on three spot workers, acting on interruption notices (a watcher drains
the node; ``tuner.report`` then checkpoints every iteration) or ignoring them (the node
just dies), and once on three on-demand workers of the same types. Dollars come from the
study's cost meter (real node-seconds x catalog price); preemptions from the cluster's
log. Real: the cluster's Ray nodes (SIGKILLed when preempted), the driver, MLflow. Faked:
EC2 (the market simulator and a local metadata endpoint per spot node).

``--idle`` runs instead the same study on the three spot workers (no preemptions) without
and with the cluster's idle scale-down (``tuner cluster up --idle-timeout``), and prints
the cluster bill, its idle dollars and the idle share of each node kind, before and after.
Real as above; idle workers are drained through the GCS and their processes stopped, and
a removed kind is started again as a new Ray node when a trial waits for one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

WORKERS = ("c5.xlarge:{m}:1:us-east-1a", "m5.xlarge:{m}:1:us-east-1b",
           "c5.xlarge:{m}:1:us-east-1c")
SPACE = {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
         "width": {"type": "int", "low": 8, "high": 128, "log": True}}


def train(config: dict) -> None:
    """A stand-in for training: 0.5 s per epoch, a checkpoint every 4 epochs."""
    import math

    import tuner

    state = tuner.load_state() or {"epoch": 0}
    while True:
        time.sleep(0.5)
        state["epoch"] += 1
        acc = (1 - math.exp(-config["lr"] * state["epoch"])) * (1 - 1 / config["width"])
        tuner.report({"acc": acc}, state=state, checkpoint_every=4)


def run_one(market: str, hazard: float, act: bool, seed: int, root: str,
            args: argparse.Namespace, idle_timeout: float | None = None,
            concurrent: int | None = None) -> dict:
    import ray

    import tuner

    name = f"{market}-{hazard:g}-{'notice' if act else 'ignore'}-{seed}"
    if idle_timeout is not None:
        name += f"-idle{idle_timeout:g}"
    if concurrent is not None:
        name += f"-c{concurrent}"
    work = os.path.join(root, name)
    os.makedirs(work)
    address_file, log_path = os.path.join(work, "cluster.json"), os.path.join(work, "cluster.log")
    command = [sys.executable, "-m", "tuner.cli", "cluster", "up", "--local", "--hazard",
               str(hazard), "--seed", str(seed), "--address-file", address_file]
    for w in WORKERS:
        command += ["--worker", w.format(m=market)]
    if not act:
        command.append("--ignore-notices")
    if idle_timeout is not None:
        command += ["--idle-timeout", str(idle_timeout)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while not os.path.exists(address_file):
            if proc.poll() is not None:
                raise RuntimeError(open(log_path).read()[-2000:])
            time.sleep(0.5)
        with open(address_file) as f:
            address = json.load(f)["address"]
        start = time.perf_counter()
        result = tuner.tune(train, SPACE, metric="acc", num_samples=args.samples, max_t=24,
                            grace_period=4, reduction_factor=2, max_failures=3, seed=seed,
                            max_concurrent_trials=concurrent,
                            ray_address=address, storage_path=os.path.join(work, "results"),
                            name=name, mlflow_uri=f"sqlite:///{root}/mlflow.db", verbose=False)
        wall = time.perf_counter() - start
        ray.shutdown()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with open(log_path) as f:
        events = f.read()
    kills = events.count("[cluster] killed")
    lost = int(result.trials["lost_iterations"].sum())
    return {"market": market, "hazard": hazard, "notices": act if market == "spot" else None,
            "preemptions": kills, "trial_usd": result.cost["cost_usd"],
            "wasted_usd": result.cost["wasted_usd"], "cluster_usd": result.cost["cluster_usd"],
            "lost_iterations": lost, "lost_per_preemption": lost / kills if kills else None,
            "wall_s": wall, "best": result.best_metric,
            "trials": len(result.trials), "failed": int((result.trials["status"] == "failed").sum()),
            "idle_timeout": idle_timeout, "idle_usd": result.cost["idle_usd"],
            "concurrent": concurrent,
            "idle_by_kind": dict(result.idle_by_kind),
            "removed": events.count("[cluster] removed"),
            "readded": events.count("[cluster] up") - kills - len(WORKERS)}


def idle_table(runs: list[dict]) -> list[str]:
    """One row per run: the bill, its idle part, and each node kind's idle share."""
    from tuner.summary import money

    kinds = sorted({k for r in runs for k in r["idle_by_kind"]})
    lines = ["| trials at once | idle scale-down | cluster $ | idle $ | idle share | "
             + " | ".join(f"{k} idle share ($)" for k in kinds)
             + " | trials' $ | wall s | workers removed / started again | trials (failed) |",
             "| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in kinds)
             + " | ---: | ---: | ---: | ---: |"]
    for r in runs:
        setting = "off" if r["idle_timeout"] is None else f"after {r['idle_timeout']:g} s idle"
        per_kind = [f"{100 * r['idle_by_kind'][k][1]:.0f}% ({money(r['idle_by_kind'][k][0])})"
                    if k in r["idle_by_kind"] else "-" for k in kinds]
        at_once = "as many as fit" if r.get("concurrent") is None else str(r["concurrent"])
        lines.append(
            f"| {at_once} | {setting} | {money(r['cluster_usd'])} | {money(r['idle_usd'])} | "
            f"{100 * r['idle_usd'] / r['cluster_usd']:.0f}% | " + " | ".join(per_kind)
            + f" | {money(r['trial_usd'])} | {r['wall_s']:.0f} | {r['removed']} / "
            f"{r['readded']} | {r['trials']} ({r['failed']}) |")
    for concurrent in dict.fromkeys(r.get("concurrent") for r in runs):
        group = [r for r in runs if r.get("concurrent") == concurrent]
        means = {}
        for off in (True, False):
            rows = [r for r in group if (r["idle_timeout"] is None) == off]
            if rows:
                means[off] = [sum(r[k] for r in rows) / len(rows) for k in ("cluster_usd", "idle_usd")]
        if len(means) == 2:
            at_once = "as many trials at once as fit" if concurrent is None else f"{concurrent} trial(s) at once"
            lines += ["", f"{at_once}, mean over seeds, off -> on: cluster {money(means[True][0])} -> "
                      f"{money(means[False][0])} ({100 * (means[False][0] / means[True][0] - 1):+.0f}%), "
                      f"idle {money(means[True][1])} -> {money(means[False][1])}."]
    return lines


def summarise(runs: list[dict]) -> list[dict]:
    """Median over seeds per setting; dollars also as a fraction of the on-demand study's."""
    base = [r for r in runs if r["market"] == "on-demand"]
    base_trial = statistics.median(r["trial_usd"] for r in base)
    base_cluster = statistics.median(r["cluster_usd"] for r in base)
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["market"], r["hazard"], r["notices"]), []).append(r)
    rows = []
    for (market, hazard, notices), rs in groups.items():
        med = {k: statistics.median(r[k] for r in rs) for k in
               ("trial_usd", "wasted_usd", "cluster_usd", "wall_s", "best")}
        kills = sum(r["preemptions"] for r in rs)
        lost = sum(r["lost_iterations"] for r in rs)
        rows.append({"market": market, "hazard": hazard, "notices": notices, "runs": len(rs),
                     "preemptions": kills, "lost_per_preemption": lost / kills if kills else None,
                     "failed": sum(r["failed"] for r in rs), **med,
                     "x_on_demand": med["trial_usd"] / base_trial,
                     "cluster_x_on_demand": med["cluster_usd"] / base_cluster})
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| workers | preemptions / node-hour | acts on notices | runs | preemptions | "
             "lost iterations per preemption | trial $ | wasted $ | trial $ x on-demand | "
             "cluster $ (head, idle) x on-demand | failed trials | wall s | best acc |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for r in rows:
        notices = "-" if r["notices"] is None else ("yes" if r["notices"] else "no")
        lost = "-" if r["lost_per_preemption"] is None else f"{r['lost_per_preemption']:.2f}"
        lines.append(
            f"| {r['market']} | {r['hazard']:g} | {notices} | {r['runs']} | {r['preemptions']} | "
            f"{lost} | {r['trial_usd']:.6f} | {r['wasted_usd']:.6f} | {r['x_on_demand']:.2f} | "
            f"{r['cluster_x_on_demand']:.2f} | {r['failed']} | {r['wall_s']:.0f} | "
            f"{r['best']:.4f} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hazards", default="0,0.05,0.3,1.3")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--idle", action="store_true",
                        help="the same study without and with idle scale-down, instead")
    parser.add_argument("--idle-timeout", type=float, default=3.0,
                        help="with --idle: seconds idle before a worker goes (default 3)")
    args = parser.parse_args(argv)
    if args.idle:
        return main_idle(args)
    hazards = [float(h) for h in args.hazards.split(",")]
    settings = [("on-demand", 0.0, True)]
    for h in hazards:
        settings += [("spot", h, True)] + ([("spot", h, False)] if h > 0 else [])
    runs = []
    with tempfile.TemporaryDirectory(prefix="tuner-bench-spot-") as root:
        for seed in range(args.seeds):
            for market, hazard, act in settings:
                r = run_one(market, hazard, act, seed, root, args)
                runs.append(r)
                print(f"  {market:9} hazard {hazard:<4g} notices {'yes' if act else 'no ':3} "
                      f"seed {seed}: {r['preemptions']} preempted, lost {r['lost_iterations']} "
                      f"iterations, ${r['trial_usd']:.6f} ({r['wall_s']:.0f} s)", flush=True)
    rows = summarise(runs)
    print("\nSpot economics on the local spot cluster")
    print("\n".join(table(rows)))
    return {"rows": rows, "runs": runs, "args": vars(args)}


def main_idle(args: argparse.Namespace) -> dict:
    """Two studies, each without and with scale-down: one that fills the three workers, and
    one that runs a trial at a time (``max_concurrent_trials: 1``), as a study whose trials
    cannot use every worker (a small study on a large cluster, ASHA's last rungs)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="tuner-bench-idle-") as root:
        for concurrent in (None, 1):
            for seed in range(args.seeds):
                for timeout in (None, args.idle_timeout):
                    r = run_one("spot", 0.0, True, seed, root, args, idle_timeout=timeout,
                                concurrent=concurrent)
                    runs.append(r)
                    print(f"  at once {concurrent}, idle timeout {timeout}, seed {seed}: cluster "
                          f"${r['cluster_usd']:.6f}, idle ${r['idle_usd']:.6f} ({r['wall_s']:.0f} s)",
                          flush=True)
    print(f"\nIdle scale-down on the local spot cluster ({len(WORKERS)} spot workers and an "
          f"on-demand head with no CPU for trials; {args.samples} trials)")
    print("\n".join(idle_table(runs)))
    return {"runs": runs, "args": vars(args)}


if __name__ == "__main__":
    main()
