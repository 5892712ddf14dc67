"""Checkpoint-and-resume for picklable state, in one line each.

A plain Ray Tune function trainable works with tuner unchanged. These helpers
spare it the checkpoint plumbing::

    def train(config):
        state = tuner.load_state() or {"model": make_model(config), "epoch": 0}
        while state["epoch"] < config["epochs"]:
            state["epoch"] += 1
            ...
            tuner.report({"val_accuracy": acc}, state=state)

``load_state`` returns what the trial last saved (after a crash, a preemption or
a driver restart) and ``report`` saves ``state`` with the metrics every
``checkpoint_every`` iterations -- and every iteration once the node has a spot
interruption notice (it is being drained), so a preemption loses at most one.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from tuner import engine
from tuner.errors import TunerError

_iterations: dict[str, int] = {}  # trial id -> iterations reported (actors are reused)
_drain_checked = [0.0, False]  # when this process last asked, and the answer


def load_state(default: Any = None) -> Any:
    """Return the state of this trial's latest checkpoint, or ``default`` if none."""
    trial = engine.current_trial_id()
    checkpoint = engine.get_checkpoint()
    if checkpoint is None:
        _iterations[trial] = 0
        return default
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, engine.STATE_FILE)
        if not os.path.exists(path):
            _iterations[trial] = 0
            return default
        with open(path, "rb") as f:
            saved = pickle.load(f)
    _iterations[trial] = saved["iteration"]
    return saved["state"]


def report(metrics: Mapping[str, Any], *, state: Any = None, checkpoint_every: int = 1) -> None:
    """Report ``metrics`` for this iteration; checkpoint ``state`` every k-th iteration.

    Args:
        metrics: what the iteration measured; must include the study's metric.
        state: any picklable object to resume from; ``None`` saves nothing.
        checkpoint_every: save on iterations k, 2k, ... (1: every iteration).
    """
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    trial = engine.current_trial_id()
    iteration = _iterations.get(trial, 0) + 1
    _iterations[trial] = iteration
    if state is None or (iteration % checkpoint_every and not _draining()):
        engine.report_to_tune(dict(metrics))
        return
    with tempfile.TemporaryDirectory(prefix="tuner-ckpt-") as directory:
        with open(os.path.join(directory, engine.STATE_FILE), "wb") as f:
            pickle.dump({"iteration": iteration, "state": state}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
        engine.report_to_tune(dict(metrics), checkpoint_directory=directory)


def _draining(min_interval_s: float = 1.0) -> bool:
    """Whether this node has a preemption notice (asked of Ray at most once a second)."""
    now = time.monotonic()
    if now - _drain_checked[0] >= min_interval_s:
        try:
            _drain_checked[1] = engine.node_is_draining()
        except TunerError:  # Ray moved its draining API: fail loudly, never stop checkpointing
            raise
        except Exception:  # not on a Ray node (a unit test), or the GCS is busy
            _drain_checked[1] = False
        _drain_checked[0] = now
    return bool(_drain_checked[1])
