"""Peers that need numpy < 1.27: DEHB (the ``dehb`` package, 0.1.2) and Syne Tune 0.14.2's
MOBSTER and Hyper-Tune (later Syne Tune releases dropped them). They cannot share the
project's environment (numpy 2), so they run in a second one, ``.venv-peers``, pinned by
``benchmarks/peers-constraints.txt`` (``make peers-env`` builds it; ``make bench`` does it
itself). The protocol hands their studies to that interpreter (``run_elsewhere``); there
they go through the same simulator (``benchmarks.sim``) as every other method.

    .venv-peers/bin/python -m benchmarks.pinned_peers jobs.json runs.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks import sim
from benchmarks.lcbench import SPACE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")


# --------------------------------------------------------------------------- the methods


class DehbMethod(sim.Method):
    """DEHB (Awad et al., IJCAI 2021) through its ask/tell interface: each job is a
    configuration trained from scratch to the fidelity DEHB asks for (iterations 1..51,
    eta 3, its defaults otherwise); the job's result is the accuracy at that fidelity."""

    def __init__(self, seed: int) -> None:
        import logging

        from dehb import DEHB

        logging.getLogger("distributed").setLevel(logging.ERROR)
        # DEHB always writes a log file; it goes with the study (removed when this is)
        self._out = tempfile.TemporaryDirectory(prefix="dehb-")
        self.dehb = DEHB(cs=_configspace(seed), dimensions=len(SPACE), min_fidelity=1,
                         max_fidelity=sim.MAX_T, eta=3, n_workers=1, seed=seed,
                         output_path=self._out.name, save_freq="end", log_level="ERROR")
        self.jobs: dict[str, tuple[dict, int]] = {}

    def suggest(self, trial_id: str) -> dict | None:
        job = self.dehb.ask()
        self.jobs[trial_id] = (job, max(1, round(job["fidelity"])))
        return _from_configspace(job["config"])

    def result(self, trial_id: str, it: int, acc: float) -> bool:
        job, fidelity = self.jobs[trial_id]
        if it < fidelity:
            return True
        self.dehb.tell(job, {"fitness": -acc, "cost": float(it)})
        del self.jobs[trial_id]
        return False


def _configspace(seed: int) -> Any:
    from ConfigSpace import ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    for name, p in SPACE.items():
        kind = Integer if p["type"] == "int" else Float
        cs.add(kind(name, (p["low"], p["high"]), log=bool(p.get("log"))))
    return cs


def _from_configspace(config: Any) -> dict:
    return {k: (int(v) if SPACE[k]["type"] == "int" else float(v))
            for k, v in dict(config).items()}


class LegacySyneMethod(sim.SyneMethod):
    """A Syne Tune 0.14 (legacy API) Hyperband scheduler, called as its Tuner calls it: it
    asks with the trial id and is told when it stopped a trial."""

    def _ask(self, trial_id: str) -> Any:
        return self.scheduler.suggest(int(trial_id))

    def _stopped(self, trial: Any) -> None:
        self.scheduler.on_trial_remove(trial)


def syne_legacy_method(kind: str, seed: int) -> sim.Method:
    """Syne Tune 0.14.2's asynchronous model-based multi-fidelity schedulers with their
    defaults (stopping type, grace period 1, reduction factor 3): ``mobster`` (Klein et al.
    2020: a joint multi-task GP over configuration and resource) or ``hypertune`` (Li et al.,
    VLDB 2022: independent GPs per rung, ensembled, with model-based bracket sampling over
    the 4 brackets rf 3 allows from iteration 1 to 51)."""
    import logging

    import numpy as np
    from syne_tune.optimizer import legacy_baselines

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    np.random.seed(seed)
    common = {"metric": sim.METRIC, "resource_attr": sim.ITER, "max_t": sim.MAX_T, "mode": "max",
              "random_seed": seed, "search_options": {"debug_log": False}}
    if kind == "mobster":
        return LegacySyneMethod(legacy_baselines.MOBSTER(sim.syne_space(), **common))
    return LegacySyneMethod(legacy_baselines.HyperTune(sim.syne_space(), brackets=4, **common))


# --------------------------------------------------------------------------- the other env


def available() -> bool:
    return os.path.exists(PYTHON)


def run_elsewhere(jobs: list[tuple], procs: int,
                  command: tuple[str, ...] = ("benchmarks.pinned_peers",)) -> list[dict]:
    """Run ``jobs`` in ``.venv-peers`` through ``python -m *command JOBS.json OUT.json`` (by
    default the protocol's job tuples, here); what OUT.json holds comes back."""
    if not available():
        raise SystemExit(f"benchmarks: {len(jobs)} studies of DEHB / MOBSTER / Hyper-Tune need "
                         f"the second environment {os.path.relpath(PYTHON, ROOT)}, which is "
                         "missing; build it with `make peers-env` (make bench does)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "jobs.json"), os.path.join(tmp, "runs.json")
        with open(src, "w", encoding="utf-8") as f:
            json.dump({"jobs": jobs, "procs": procs}, f)
        subprocess.run([PYTHON, "-m", *command, src, dst], cwd=ROOT, check=True)
        with open(dst, encoding="utf-8") as f:
            return json.load(f)


def main(argv: list[str] | None = None) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks import protocol

    src, dst = (argv or sys.argv[1:])[:2]
    with open(src, encoding="utf-8") as f:
        spec = json.load(f)
    jobs = [tuple(j) for j in spec["jobs"]]
    runs = []
    with ProcessPoolExecutor(max_workers=spec["procs"]) as pool:
        for run in pool.map(protocol._job, jobs, chunksize=1):
            runs.append(run)
            if len(runs) % max(1, len(jobs) // 5) == 0 or len(runs) == len(jobs):
                print(f"  {len(runs)}/{len(jobs)} studies ({run['method']})", flush=True)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(runs, f)


if __name__ == "__main__":
    main()
