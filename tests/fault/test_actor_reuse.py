"""A reused trial actor that dies before the next trial starts on it.

With ``reuse_actors`` (the product's setting) Tune hands a finished trial's actor to the
next trial through a ``reset`` task. On a spot cluster that actor can be gone by then: its
node was preempted. Real: the Ray cluster, Tune with the product's patch
(``ray_compat.count_a_dead_reused_actor_once``), the actor's process, killed with SIGKILL
by a Tune callback in the driver as the first trial completes, before its actor is handed
on. Nothing is faked; the node's loss is played by the death of the process.
"""

from __future__ import annotations

import os
import signal
import time

from ray import tune
from ray.tune import Callback, FailureConfig, RunConfig, TuneConfig, Tuner

from tuner import ray_compat

ITERATIONS = 3


def _train(config):
    for it in range(1, ITERATIONS + 1):
        tune.report({"score": config["x"] * it})  # Tune adds the process id ("pid")


def _dead(pid: int) -> bool:
    """Gone, or a zombie until the raylet reaps it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class _KillFirstActor(Callback):
    """SIGKILLs the process of the first trial to complete, and records every retry."""

    def __init__(self) -> None:
        self.killed: int | None = None
        self.retried: list[str] = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.killed is None:
            self.killed = trial.last_result["pid"]
            os.kill(self.killed, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not _dead(self.killed):
                assert time.monotonic() < deadline, f"pid {self.killed} outlived SIGKILL"
                time.sleep(0.01)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.retried.append(trial.trial_id)


def test_a_trial_handed_a_dead_actor_is_retried_not_failed(ray_cluster, tmp_path):
    """Without the patch, the second trial is retried once by the actor's error handler,
    then ended ERROR by the reset task's handler for the same death (Ray 2.60)."""
    ray_compat.count_a_dead_reused_actor_once()
    killer = _KillFirstActor()
    grid = Tuner(
        _train,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=TuneConfig(metric="score", mode="max", reuse_actors=True,
                               max_concurrent_trials=1),
        run_config=RunConfig(name="reuse", storage_path=str(tmp_path), callbacks=[killer],
                             failure_config=FailureConfig(max_failures=1), verbose=0),
    ).fit()

    assert killer.killed is not None
    assert killer.retried, "no trial was handed the dead actor: the scenario did not happen"
    assert grid.errors == []
    assert sorted(r.metrics["score"] for r in grid) == [3, 6, 9]
    assert all(r.metrics["training_iteration"] == ITERATIONS for r in grid)
