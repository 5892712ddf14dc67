"""Inside a trial: what runs on the worker (reporting, checkpoints, the node's draining
state) and the mixin that stamps every result with its node and busy seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray
from ray import tune
from ray.tune import Checkpoint

from tuner import ray_compat

ITERATION = "training_iteration"
NODE_ID = "node_id"
BUSY_S = "node_busy_s"


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


class _NodeIdMixin:
    """Adds to each result the Ray node the trial runs on and the seconds it held its
    resources since the previous result (wall time on the worker, pauses included), so
    the driver can price it."""

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
        self._tuner_since = now
        return metrics


def _with_node_id(trainable: Callable[..., Any]) -> Callable[..., Any]:
    return ray_compat.with_mixins(trainable, _NodeIdMixin)


def with_node_id(trainable: Callable[..., Any]) -> Callable[..., Any]:
    """``trainable`` whose results carry their node and busy seconds (what is priced)."""
    return ray_compat.with_mixins(trainable, _NodeIdMixin)
