"""The LCBench surrogate (YAHPO Gym's ONNX model, Apache-2.0: see NOTICE.md) evaluated
with onnxruntime: learning curves of 7 MLP hyperparameters on 34 OpenML tasks.

    bench = LCBench()
    bench.curve("3945", config)       # 52 rows: epoch, time (cumulative s), val_accuracy, ...

Inputs follow the reference implementation (yahpo-gym 1.0.2): the task id integer-encoded
by ``encoding.json``, and the continuous inputs, in the order of ``CONT_NAMES``, as float32;
the model holds its own input transformations. ``reference_values.json`` pins it
(``tests/unit/test_lcbench.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONT_NAMES = ("epoch", "batch_size", "learning_rate", "momentum", "weight_decay", "num_layers",
              "max_units", "max_dropout")
OUTPUTS = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy",
           "test_cross_entropy", "test_balanced_accuracy")
EPOCHS = 52
# The search space of config_space.json, in tuner's YAML shape.
SPACE = {
    "batch_size": {"type": "int", "low": 16, "high": 512, "log": True},
    "learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "max_dropout": {"type": "float", "low": 0.0, "high": 1.0},
    "max_units": {"type": "int", "low": 64, "high": 1024, "log": True},
    "momentum": {"type": "float", "low": 0.1, "high": 0.99},
    "num_layers": {"type": "int", "low": 1, "high": 5},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 0.1},
}


@dataclass(frozen=True)
class Curve:
    """One configuration's learning curve: arrays indexed by epoch - 1."""

    time: np.ndarray  # cumulative simulated training seconds at each epoch
    val_accuracy: np.ndarray  # percent

    def epoch_seconds(self, epoch: int) -> float:
        """Simulated seconds of epoch ``epoch`` alone (never negative)."""
        before = self.time[epoch - 2] if epoch > 1 else 0.0
        return max(float(self.time[epoch - 1] - before), 0.0)

    def seconds_to(self, epoch: int) -> float:
        """Simulated seconds to train epochs 1..``epoch``."""
        return sum(self.epoch_seconds(e) for e in range(1, epoch + 1))


class LCBench:
    """The surrogate: ``predict`` many (task, config, epoch) rows, ``curve`` one config."""

    def __init__(self, path: str = HERE, threads: int = 1) -> None:
        import onnxruntime as ort

        with open(os.path.join(path, "encoding.json"), encoding="utf-8") as f:
            self._tasks = json.load(f)["OpenML_task_id"]
        with open(os.path.join(path, "config_space.json"), encoding="utf-8") as f:
            space = {hp["name"]: hp for hp in json.load(f)["hyperparameters"]}
        self.tasks: tuple[str, ...] = tuple(space["OpenML_task_id"]["choices"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        self._session = ort.InferenceSession(os.path.join(path, "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])

    def predict(self, rows: Sequence[Mapping]) -> list[dict[str, float]]:
        """Outputs for rows holding ``OpenML_task_id``, the 7 hyperparameters and ``epoch``."""
        for row in rows:
            if str(row["OpenML_task_id"]) not in self.tasks:
                raise ValueError(f"OpenML_task_id {row['OpenML_task_id']!r} is not an LCBench "
                                 f"task; choose one of {', '.join(self.tasks)}")
        x_cat = np.array([[self._tasks[str(r["OpenML_task_id"])]] for r in rows], dtype=np.int32)
        x_cont = np.array([[r[k] for k in CONT_NAMES] for r in rows], dtype=np.float32)
        out = self._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]
        return [dict(zip(OUTPUTS, map(float, y))) for y in out]

    def curve(self, task: str, config: Mapping) -> Curve:
        """All 52 epochs of ``config`` on ``task`` in one call."""
        rows = [{**config, "OpenML_task_id": task, "epoch": e} for e in range(1, EPOCHS + 1)]
        out = self.predict(rows)
        return Curve(time=np.array([o["time"] for o in out]),
                     val_accuracy=np.array([o["val_accuracy"] for o in out]))


_SHARED: list[LCBench] = []


def shared() -> LCBench:
    """One surrogate per process (Ray reuses trial actors; loading takes ~0.1 s)."""
    if not _SHARED:
        _SHARED.append(LCBench())
    return _SHARED[0]
