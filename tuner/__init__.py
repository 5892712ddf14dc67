"""spot-tuner: hyperparameter tuning on spot capacity, with the cost of every trial.

Public API::

    result = tuner.tune(train, space="search_spaces/mlp.yaml", metric="val_accuracy")
    result = tuner.resume("tuner_results/<name>")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError, StudyError, TunerError
from tuner.search_space import SearchSpace, load_space

__all__ = [
    "ConfigError",
    "SearchSpace",
    "StudyError",
    "TuneResult",
    "TunerError",
    "load_space",
    "load_state",
    "report",
    "resume",
    "tune",
]

if TYPE_CHECKING:
    from tuner.api import resume, tune
    from tuner.result import TuneResult
    from tuner.trainable import load_state, report

_LAZY = {"tune": "tuner.api", "resume": "tuner.api", "TuneResult": "tuner.result",
         "load_state": "tuner.trainable", "report": "tuner.trainable"}


def __getattr__(name: str) -> Any:  # Ray is imported only when it is used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


def __dir__() -> list[str]:  # tab completion offers the lazy names too
    return sorted({*globals(), *__all__})
