"""Inside a trial: what runs on the worker (reporting, checkpoints, the node's draining
state) and the mixin that stamps every result with its node and busy seconds and
restores a trial from a checkpoint that exists."""

from __future__ import annotations

import pickle
import posixpath
import sys
import time
from collections.abc import Callable
from typing import Any

import pyarrow.fs
import ray
from ray import tune
from ray.tune import Checkpoint

from tuner import ray_compat

ITERATION = "training_iteration"
STATE_FILE = "tuner_state.pkl"  # what tuner.report saves: {"iteration": n, "state": ...}
NODE_ID = "node_id"
BUSY_S = "node_busy_s"
BUSY_UNTIL = "node_busy_until"  # when that busy time ended (the worker's wall clock)


def report_to_tune(metrics: dict[str, Any], checkpoint_directory: str | None = None) -> None:
    """``tune.report``, with an optional checkpoint directory to persist."""
    checkpoint = Checkpoint.from_directory(checkpoint_directory) if checkpoint_directory else None
    tune.report(metrics, checkpoint=checkpoint)


def get_checkpoint() -> Checkpoint | None:
    return tune.get_checkpoint()


def current_trial_id() -> str:
    return tune.get_context().get_trial_id() or "local"


def node_is_draining() -> bool:
    """Whether this worker's node is being drained (a spot notice: checkpoint now)."""
    return ray.get_runtime_context().get_node_id() in ray_compat.draining_node_ids()


class _TrialMixin:
    """Adds to each result the Ray node the trial runs on and the seconds it held its
    resources since the previous result, with when they ended (wall time on the worker,
    pauses included; the driver hears of a result later, by a variable lag), so the driver
    can price it and place it in time; restores from a checkpoint that exists."""

    def setup(self, config: dict) -> Any:
        self._tuner_since = time.time()
        return super().setup(config)  # type: ignore[misc]

    def reset_config(self, new_config: dict) -> bool:
        self._tuner_since = time.time()
        return super().reset_config(new_config)  # type: ignore[misc]

    def get_auto_filled_metrics(self, *args: Any, **kwargs: Any) -> dict:
        metrics = super().get_auto_filled_metrics(*args, **kwargs)  # type: ignore[misc]
        now = time.time()
        metrics[NODE_ID] = ray.get_runtime_context().get_node_id()
        metrics[BUSY_S] = now - getattr(self, "_tuner_since", now)
        metrics[BUSY_UNTIL] = now
        self._tuner_since = now
        return metrics


    def restore(self, checkpoint_path: Any) -> Any:
        """Ray's restore, from a checkpoint that exists (see :func:`existing_checkpoint`)."""
        checkpoint = getattr(checkpoint_path, "checkpoint", None)
        if checkpoint is not None and not _exists(checkpoint.filesystem, checkpoint.path):
            found = existing_checkpoint(checkpoint.filesystem, checkpoint.path)
            if found is None:
                return None  # nothing to resume from: the trial starts over
            checkpoint_path.checkpoint, iteration = found
            checkpoint_path.metrics = {**checkpoint_path.metrics, ITERATION: iteration}
        return super().restore(checkpoint_path)  # type: ignore[misc]


def existing_checkpoint(fs: pyarrow.fs.FileSystem, missing: str) -> tuple[Checkpoint, int] | None:
    """The trial's newest checkpoint, and its iteration, in place of ``missing``.

    A resumed experiment's snapshot can name a checkpoint that Tune deleted after the
    snapshot was taken (it keeps ``checkpoints_to_keep``; a driver killed between the
    next snapshot and the deletion leaves them out of step), and Ray then fails the trial
    on every retry. The newer checkpoints are there: resume from the newest that
    ``tuner.report`` wrote (it knows its iteration); without one, start the trial over.
    """
    trial_dir = posixpath.dirname(missing)
    names = sorted((info.path for info in fs.get_file_info(pyarrow.fs.FileSelector(trial_dir, allow_not_found=True))
                    if info.type == pyarrow.fs.FileType.Directory
                    and posixpath.basename(info.path).startswith("checkpoint_")),
                   key=posixpath.basename, reverse=True)
    for path in names:
        try:
            with fs.open_input_stream(posixpath.join(path, STATE_FILE)) as f:
                iteration = int(pickle.loads(f.read())["iteration"])
        except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError):
            continue
        print(f"tuner: checkpoint {missing} is gone (deleted after the experiment's last "
              f"snapshot); resuming from {path}, iteration {iteration}", file=sys.stderr)
        return Checkpoint(path, filesystem=fs), iteration
    print(f"tuner: checkpoint {missing} is gone and the trial has no other; it starts over",
          file=sys.stderr)
    return None


def _exists(fs: pyarrow.fs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def with_trial_mixin(trainable: Callable[..., Any]) -> Callable[..., Any]:
    """``trainable`` whose results carry their node and busy seconds (what is priced) and
    whose restore survives a checkpoint deleted after the experiment's snapshot."""
    return ray_compat.with_mixins(trainable, _TrialMixin)
