"""Fresh seeds 10-19 on the 17 even tasks for round 1's default (multivariate TPE), round 1's
pick (independent TPE; with grace 1, what round 2 replaced) and two peers: does the pick's
lead over the default survive new seeds? Reads the 10-seed choice
analysis for the reference (each task's reference is raised by any better run here).

    PYTHONPATH=. nice -n 19 .venv/bin/python benchmarks/results/choice/replicate_seeds10-19.py
"""
import json
import os

import numpy as np

from benchmarks import protocol as p

HERE = os.path.dirname(os.path.abspath(__file__))
ROUND1_PICK = "ours, grace 1"  # independent TPE, first rung 1: round 1's pick, named as now
METHODS = [p.PREVIOUS, ROUND1_PICK, "ASHA + random (Ray defaults)",
           "Syne Tune BOHB (async, KDE)"]
SEEDS = list(range(10, 20))

with open(os.path.join(HERE, "analysis_17x10.json"), encoding="utf-8") as f:
    base = json.load(f)
even, workers, fte = base["even"], base["workers"], base["fte"]
p.RUNS = os.path.join(HERE, "replication_runs.json.gz")
p.load_cache(p.RUNS)
info = p.reference(even)
jobs = [(m, t, s, workers, fte * info[t]["fte_s"], info[t]["fte_s"])
        for m in METHODS for t in even for s in SEEDS]
runs = p.run_jobs(jobs, 2)
p.save_cache()
ref = {t: max(base["ref"][t], *(max(r["best"]) for r in runs if r["task"] == t and r["best"]))
       for t in even}
an = p.analyse(runs, METHODS, even, SEEDS, ref, workers, p.PREVIOUS, fte)  # shipped then
cpu = {m: float(np.mean([r["cpu_s"] for r in runs if r["method"] == m])) for m in METHODS}
trials = {m: float(np.mean([r["trials"] for r in runs if r["method"] == m])) for m in METHODS}
saved, p.CANDIDATES = p.CANDIDATES, dict.fromkeys(METHODS[:2])  # round 1's candidates
lines = p.choice_table(an, ROUND1_PICK, cpu, trials)
p.CANDIDATES = saved
with open(os.path.join(HERE, "replication_seeds10-19.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(HERE, "replication_seeds10-19.json"), "w", encoding="utf-8") as f:
    json.dump({"seeds": SEEDS, "ref": ref, "analysis": an, "cpu_s": cpu, "trials": trials},
              f, indent=1, default=p._jsonable)
print("\n".join(lines))
